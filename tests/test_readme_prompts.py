"""bench.readme_prompts finds the README's prompts, and the backdrop judge it relies on reads
the world's backdrops."""

from pathlib import Path

from bench.readme_prompts import README, judge_backdrops_on_world, readme_prompts
from engine.prompt import parse_prompt

SAMPLE = '''Intro with --prompt "not in a code block but still a command"

```bash
lvp render --prompt "a red circle bouncing on a night background" \\
           --duration 600 --out out.mp4
lvp render --model ltx-video --prompt "a red fox running through snow" --out fox.mp4
lvp render --model procedural --prompt "a green square resting at day" --out sq.mp4
```

```
00:00 a red circle bouncing on a night background
01:30 a blue star spinning at sunset
1:00:00 a white square resting in a meadow
```

12:00 outside a code block is prose, not a schedule line
'''


def test_readme_prompts_finds_commands_and_schedule_lines_but_not_plugins():
    assert readme_prompts(SAMPLE) == [
        "not in a code block but still a command",
        "a red circle bouncing on a night background",
        "a green square resting at day",
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
