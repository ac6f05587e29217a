"""GET /health latency, the way a load balancer sees it: a real gunicorn on a free loopback port.

    .venv/bin/python benchmarks/health_latency.py [--requests 500]

Runs twice: with the local secret store, and with Vault (a real OpenBao dev server, started on a
free loopback port for the run). Prints p50, p95 and p99 in milliseconds. Target: well under 100 ms.
The database is SQLite in a temporary folder, or BENCH_DATABASE_URL when set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.net import free_port  # noqa: E402
from tests.openbao import running_openbao  # noqa: E402


def measure(env: dict[str, str], requests: int) -> list[float]:
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "keybuzz.wsgi",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.2)
        timings = []
        for _ in range(requests):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=5) as response:
                response.read()
                assert response.status == 200
            timings.append((time.perf_counter() - started) * 1000)
        return timings
    finally:
        server.terminate()
        server.wait(10)


def report(name: str, timings: list[float]) -> None:
    q = statistics.quantiles(timings, n=100)
    print(f"{name:<14} p50 {q[49]:6.2f} ms   p95 {q[94]:6.2f} ms   p99 {q[98]:6.2f} ms   ({len(timings)} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "SECRETS_"))}
        base.update({"KEYBUZZ_ENV_FILE": "none", "DEBUG": "true", "KEYBUZZ_VAR_DIR": tmp, "LOG_LEVEL": "WARNING"})
        if os.environ.get("BENCH_DATABASE_URL"):
            base["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=base, check=True)

        report("local store", measure({**base, "SECRETS_BACKEND": "local"}, args.requests))
        with running_openbao(Path(tmp) / "bao") as bao:
            vault = {**base, "SECRETS_BACKEND": "vault", "VAULT_ADDR": bao.addr, "VAULT_TOKEN": bao.root_token}
            report("vault (bao)", measure(vault, args.requests))


if __name__ == "__main__":
    main()
