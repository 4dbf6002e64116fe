"""bench.readme_prompts finds the README's prompts, and the backdrop judge it relies on reads
the world's backdrops."""

from pathlib import Path

from bench.readme_prompts import README, backdrop_named, judge_backdrops_on_world, readme_prompts
from engine.prompt import parse_prompt

SAMPLE = '''Prose naming --prompt "not a command" is not read; `lvp render --prompt "inline"` is.

```bash
lvp render --prompt "a red circle bouncing on a night background" \\
           --duration 600 --out out.mp4
lvp render --model ltx-video --weights /m \\
           --prompt "a red fox running through snow" --out fox.mp4
lvp render --prompt 'fox' --model=ltx; lvp render --model "tiny" --prompt="a green square resting at day"
```

   ~~~
   00:00 a red circle bouncing on a night background
   01:30.5 a blue star spinning at sunset
   1:00:00 a white square resting in a meadow
   ~~~

```
12:00 a log line
not a schedule line, so this block is no schedule
```
'''


def test_readme_prompts_finds_commands_and_schedule_lines_but_not_plugins():
    assert readme_prompts(SAMPLE) == [
        "a red circle bouncing on a night background",
        "a green square resting at day",
        "inline",
        "a blue star spinning at sunset",
        "a white square resting in a meadow",
    ]


def test_every_readme_prompt_is_understood_without_warnings():
    prompts = readme_prompts(Path(README).read_text())
    assert len(prompts) >= 3
    for prompt in prompts:
        scene = parse_prompt(prompt)
        assert scene.warnings == (), prompt


def test_the_backdrop_judge_reads_the_worlds_backdrops():
    assert judge_backdrops_on_world(60) >= 0.95


def test_the_backdrop_vote_needs_a_majority():
    assert backdrop_named(["night"] * 6 + ["day"] * 4) == "night"
    assert backdrop_named(["night"] * 5 + ["day"] * 5) is None
