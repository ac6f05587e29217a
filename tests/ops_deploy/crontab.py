"""A parser for /etc/cron.d files (crontab(5), Debian's cron): `NAME=value` lines, and job lines of
five time fields, a user and a command. Strict where cron is silent: a line cron would ignore or
misread (bad range, `%` unescaped, no final newline) is an error here."""

from __future__ import annotations

import re
from dataclasses import dataclass

MONTHS = {
    name: n
    for n, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1
    )
}
DAYS = {name: n for n, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# name, lowest, highest, names allowed as single values
FIELDS = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
]
SPECIAL = {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_ENV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]*\$?$")


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class CronJob:
    line_no: int
    schedule: tuple[frozenset[int], ...] | str  # the five expanded fields, or a @special string
    user: str
    command: str


@dataclass(frozen=True)
class CronFile:
    env: dict[str, str]
    jobs: list[CronJob]


def _number(text: str, low: int, high: int, names: dict[str, int], *, single: bool) -> int:
    if text.isdigit():
        value = int(text)
    elif text.lower() in names and single:
        value = names[text.lower()]
    else:
        raise CronError(f"{text!r} is not a number" + (" (names cannot be in ranges)" if names else ""))
    if not low <= value <= high:
        raise CronError(f"{value} is out of range {low}-{high}")
    return value


def parse_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    names = names or {}
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"bad step in {part!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first = _number(start, low, high, names, single=False)
            last = _number(end, low, high, names, single=False)
            if first > last:
                raise CronError(f"backwards range {base!r}")
        else:
            if slash:
                raise CronError(f"a step needs * or a range, not {part!r}")
            first = last = _number(base, low, high, names, single=True)
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _check_command(command: str) -> None:
    # cron turns an unescaped % into a newline (the rest becomes the command's stdin).
    if re.search(r"(?<!\\)%", command):
        raise CronError("unescaped % in the command (cron reads it as a newline)")


def parse_cron_d(text: str) -> CronFile:
    if text and not text.endswith("\n"):
        raise CronError("the file must end with a newline (cron ignores a last line without one)")
    env: dict[str, str] = {}
    jobs: list[CronJob] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("@"):
                parts = line.split(maxsplit=2)
                if len(parts) < 3 or parts[0] not in SPECIAL:
                    raise CronError(f"bad special schedule line: {line!r}")
                schedule: tuple[frozenset[int], ...] | str = parts[0]
                user, command = parts[1], parts[2]
            elif (match := _ENV.match(line)) and not line[0].isdigit() and not line.startswith("*"):
                value = match.group(2)
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                env[match.group(1)] = value
                continue
            else:
                parts = line.split(maxsplit=6)
                if len(parts) < 7:
                    raise CronError("a job needs 5 time fields, a user and a command")
                schedule = tuple(
                    parse_field(part, low, high, names)
                    for part, (_, low, high, names) in zip(parts[:5], FIELDS, strict=True)
                )
                user, command = parts[5], parts[6]
            if not _USER.match(user):
                raise CronError(f"bad user name {user!r}")
            _check_command(command)
        except CronError as exc:
            raise CronError(f"line {line_no}: {exc}") from None
        jobs.append(CronJob(line_no=line_no, schedule=schedule, user=user, command=command))
    return CronFile(env=env, jobs=jobs)
