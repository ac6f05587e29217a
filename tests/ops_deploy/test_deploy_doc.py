"""docs/DEPLOY.md, statically (the whole page is run by `scripts/check-deploy.sh`): its blocks are
ones the check knows and host-only commands are marked, the env table matches
.env.production.example, the runbook's troubleshooting problems and grep lines are there, and the
expected-output matcher does what the page says."""

from __future__ import annotations

import re

import pytest

from tests.ops_deploy.conftest import ROOT
from tests.ops_deploy.doc_runner import DocError, expected_pattern, lint, match_expected, parse_doc

DOC = (ROOT / "docs" / "DEPLOY.md").read_text()
EXAMPLE = (ROOT / ".env.production.example").read_text()


def example_variables() -> dict[str, str]:
    return dict(line.split("=", 1) for line in EXAMPLE.splitlines() if re.match(r"^[A-Z_]+=", line))


def test_the_page_parses_and_lints():
    items = parse_doc(DOC)
    lint(items)
    kinds = [item.kind for item in items]
    assert kinds.count("run") + kinds.count("host") >= 25
    assert kinds.count("expect") >= 20
    assert {"amazon-consent", "cron-tick"} <= {item.text for item in items if item.kind == "directive"}


def test_every_variable_of_the_env_table_is_in_the_example():
    table = DOC.split("| variable | where it comes from |")[1].split("\n\n")[0]
    named = set(re.findall(r"^\| ([^|]+) \|", table, flags=re.M)) - {"---"}
    variables = {name for cell in named for name in re.findall(r"`([A-Z_]+)`", cell)}
    assert variables, table
    assert variables <= set(example_variables()), variables - set(example_variables())


def test_every_placeholder_of_the_example_is_explained_and_filled_by_the_check():
    """A new `***` in the example must be in the table (the operator's instructions) and in the
    check's stand-in for the operator's edit, or `grep ***` of step 1 fails the check."""
    placeholders = {key for key, value in example_variables().items() if "***" in value}
    assert placeholders
    source = (ROOT / "tests" / "ops_deploy" / "doc_runner.py").read_text()
    for key in placeholders:
        assert f"`{key}`" in DOC, f"{key} is not explained in DEPLOY.md's env table"
        assert f'"{key}":' in source, f"{key} is not filled by the DEPLOY.md check's nano"


@pytest.mark.parametrize(
    "problem", ["Invalid state", "Token exchange failed", "Connection not CONNECTED", "No credentials found"]
)
def test_the_runbooks_four_problems_are_there(problem):
    assert f'### Problem: "{problem}"' in DOC
    section = DOC.split(f'### Problem: "{problem}"')[1].split("### ")[0]
    for part in ("**Cause:**", "**What KeyBuzz prints:**", "**Solution:**"):
        assert part in section


@pytest.mark.parametrize(
    "line",
    [
        'grep -i "amazon oauth.*error"',
        'grep -i "amazon poller.*error" /var/log/amazon-polling.log',
        'grep -i "token refresh failed"',
    ],
)
def test_the_runbooks_grep_lines_are_kept(line):
    assert line in DOC


def test_the_deploy_files_the_page_installs_exist():
    for name in re.findall(r"deploy/([\w.-]+)", DOC):
        assert (ROOT / "deploy" / name).is_file(), name
    assert "/etc/cron.d/keybuzz-backend" in DOC  # no dot in the name, or cron ignores it


def test_metrics_are_referenced():
    assert "manage.py keybuzz_metrics" in DOC and "/metrics" in DOC


@pytest.mark.parametrize(
    "bad",
    [
        "```bash ci\necho\n```\n",
        "```bash\nsudo systemctl restart keybuzz-backend\n```\n",
        "```bash host\necho nothing host-only here\n```\n",
        "```text expect\nalone\n```\n",
        "<!-- ci: teleport -->\n",
        "```bash\necho\n",
    ],
)
def test_lint_refuses(bad):
    with pytest.raises(DocError):
        lint(parse_doc(bad))


def test_expected_lines_match_in_order_with_wildcards():
    output = "\n".join(
        [
            "2025-12-14T10:00:00.000Z INFO marketplaces.poller tenant=t-1 connection=c-1 "
            "[Amazon Poller] Starting poll for tenant: t-1 (connection c-1)",
            "noise",
            "[Amazon Poller] Summary: connections=1   fetched=3 failures=0 seconds=0.05",
        ]
    )
    expected = (
        "… tenant=<tenant id> connection=<connection id> "
        "[Amazon Poller] Starting poll for tenant: <tenant id> …\n"
        "[Amazon Poller] Summary: connections=1 fetched=3 failures=0 seconds=…\n"
    )
    assert match_expected(expected, output) == []
    # the same placeholder must be the same value within a line
    assert match_expected("tenant=<tenant id> … for tenant: <tenant id>", "tenant=a x for tenant: b") != []
    # order counts
    assert match_expected("second\nfirst", "first\nsecond") == ["first"]
    assert expected_pattern("==> /var/log/x.log <==").search("==> /var/log/x.log <==")
