"""Does every prompt in the README render as it reads?

    python -m bench.readme_prompts                    # tiny and the procedural oracle, 3 seeds
    python -m bench.readme_prompts --models tiny --seeds 0,1,2,3,4

Finds every prompt the README gives lvp's own models (`--prompt "..."` on a command without
`--model` naming a plug-in, and the lines of its prompt-schedule example), renders each for
10 s at the size `lvp eval` judges (128x128, 15 fps), seed 0 (what a user who copies the
command gets) and more, and reads the frames back with the judges: color and shape
(evaluation/judge.py, a picture a second), the motion (evaluation/motion.py, the tracker's
measures and classifier) and the backdrop (evaluation/backdrop.py). A clip reads as written
when 90% of its pictures have the prompt's color and shape, the motion judge names its
motion and most pictures show its backdrop. The judges are checked first on world pictures
(the procedural column is the oracle: a judge it fails is broken). The README's bouncing
example also takes `--audio beat.wav`; it is rendered without audio here (whether a bounce
hops on the beat is `lvp eval`'s `motion_bounce_beat_sync`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import time
from pathlib import Path

import numpy as np

from engine.prompt import BACKGROUNDS, COLORS, MOTIONS, SHAPES, Scene, parse_prompt
from engine.schedule import SCHEDULE_LINE
from engine.world import background, draw_subject, subject_state
from evaluation import backdrop

README = Path(__file__).resolve().parent.parent / "README.md"
OWN_MODELS = ("tiny", "procedural")
_FENCE = re.compile(r"^\s*(```|~~~)")
_COMMAND_SEPARATORS = {";", "&&", "||", "|", "&"}


def _code_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced code block (``` or ~~~, indented or not)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if _FENCE.match(line):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _commands(text: str) -> list[list[str]]:
    """Shell words of every command in a text: continued lines joined, split at ; && || |."""
    joined = re.sub(r"\\\n", " ", text)
    commands: list[list[str]] = []
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            words = list(lexer)
        except ValueError:  # an unbalanced quote: prose, not a command
            continue
        command: list[str] = []
        for word in [*words, ";"]:
            if word in _COMMAND_SEPARATORS:
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(word)
    return commands


def _option(words: list[str], name: str) -> list[str]:
    """Every value of `--name VALUE` or `--name=VALUE` in a command's words."""
    values = []
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            values.append(words[i + 1])
        elif word.startswith(name + "="):
            values.append(word[len(name) + 1:])
    return values


def _schedule_lines(block: list[str]) -> list[str]:
    """The prompts of a block that is a prompt schedule (every non-empty line `[H:]MM:SS text`,
    as lvp reads them), else none."""
    lines = [line for line in block if line.strip()]
    matches = [SCHEDULE_LINE.match(line) for line in lines]
    if not lines or not all(matches):
        return []
    return [m.group(4) for m in matches]


def readme_prompts(text: str) -> list[str]:
    """The prompts the README gives lvp's own models, in order, each once: `--prompt` values
    of commands (in code blocks or inline code) whose `--model` is one of lvp's own or absent,
    and the lines of its prompt-schedule examples."""
    found: list[str] = []
    blocks = _code_blocks(text)
    inline = re.findall(r"`([^`\n]+)`", text)
    for command in _commands("\n".join(["\n".join(b) for b in blocks] + inline)):
        if any(model not in OWN_MODELS for model in _option(command, "--model")):
            continue  # a plug-in's example (its own vocabulary)
        found += _option(command, "--prompt")
    for block in blocks:
        found += _schedule_lines(block)
    return list(dict.fromkeys(found))


def judge_backdrops_on_world(count: int = 200) -> float:
    """Share of world pictures (128x128, every color, shape and motion's subject drawn at a
    random moment, seeds apart from the judge's reference) whose backdrop the backdrop judge
    names right."""
    rng = np.random.default_rng(7)
    hits = []
    for n in range(count):
        name = BACKGROUNDS[n % len(BACKGROUNDS)]
        scene = Scene(str(rng.choice(list(COLORS))), str(rng.choice(SHAPES)), str(rng.choice(MOTIONS)), name)
        seed = int(rng.integers(1000, 40_000))
        picture = background(name, 128, 128, seed).copy()
        draw_subject(picture, scene, subject_state(scene, float(rng.uniform(0, 30)), seed))
        hits.append(backdrop.classify([picture])[0] == name)
    return float(np.mean(hits))


def backdrop_named(names: list[str]) -> str | None:
    """The backdrop more than half of a clip's pictures show, if one does."""
    top = max(sorted(set(names)), key=names.count) if names else None
    return top if top is not None and names.count(top) * 2 > len(names) else None


def judge_prompt(backend, judge, prompt: str, seed: int) -> dict:
    from evaluation.evaluate import Run, eval_spec
    from evaluation.motion import judge_clip

    scene = parse_prompt(prompt)
    run = Run(eval_spec(prompt, 10.0, backend.name, seed), backend)
    try:
        frames = run.stitched()
        fps = run.timeline.spec.fps
    finally:
        run.close()
    pictures = list(frames[::fps])
    colors, shapes = judge.classify(pictures)
    named, _ = judge_clip(frames, scene, fps)
    result = {"color": float(np.mean([c == scene.color for c in colors])),
              "shape": float(np.mean([s == scene.shape for s in shapes])),
              "motion": named,
              "backdrop": backdrop_named(backdrop.classify(pictures)) or "(none)"}
    result["reads"] = (result["color"] >= 0.9 and result["shape"] >= 0.9 and named == scene.motion
                       and result["backdrop"] == scene.background)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.readme_prompts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,procedural", help="backends (default tiny,procedural)")
    parser.add_argument("--seeds", default="0,1,2",
                        help="seeds per prompt (default 0,1,2; 0 is lvp's default)")
    parser.add_argument("--readme", type=Path, default=README,
                        help="the README to read (default: this checkout's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: all cores)")
    args = parser.parse_args(argv)

    import torch

    from engine.models.base import create_backend
    from evaluation.judge import Judge

    torch.set_num_threads(args.threads)
    prompts = readme_prompts(args.readme.read_text())
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{len(prompts)} prompts in {args.readme.name}; backdrop judge on 200 world pictures: "
          f"{judge_backdrops_on_world():.3f} named right\n")
    judge = Judge()
    width = 11
    print(f"{'prompt':<50}{'model':<12}{'seed':>5}{'color':>{width}}{'shape':>{width}}"
          f"{'motion':>{width + 5}}{'backdrop':>{width}}  reads as written")
    tally: dict[str, list[bool]] = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        backend = create_backend(name)
        start = time.perf_counter()
        for prompt in prompts:
            warnings = parse_prompt(prompt).warnings
            for seed in seeds:
                r = judge_prompt(backend, judge, prompt, seed)
                tally.setdefault(name, []).append(r["reads"])
                print(f"{prompt[:49]:<50}{name:<12}{seed:>5}{r['color']:>{width}.2f}{r['shape']:>{width}.2f}"
                      f"{r['motion']:>{width + 5}}{r['backdrop']:>{width}}  {'yes' if r['reads'] else 'NO'}"
                      + (f"  (warnings: {'; '.join(warnings)})" if warnings else ""), flush=True)
        print(f"{name}: {sum(tally[name])} of {len(tally[name])} clips read as written "
              f"({time.perf_counter() - start:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
