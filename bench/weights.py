"""Benchmark: fetching weights into the cache, next to a plain `curl` of the same object.

One run, on loopback, nothing from the internet:

1. An object of `--size-gb` GiB (random bytes) is served by an S3-compatible server
   (moto, its own process) and by a plain HTTP file server (stdlib + sendfile, its own
   process), both from tests/support/weight_servers.py.
2. For each, `--repeats` times in turn: `curl -o /dev/null` of the object (the limit
   here), then the fetcher
   (`fetch_weights`, as `fovea-models fetch-weights` runs it: lookup, streamed download
   with sha256 on the way, verify, rename into the cache) into an empty cache. GB/s of
   the best of each (GB = 1e9 bytes) and their ratio; target >= 0.8.
   For reference, `curl -o FILE` on the cache's disk (the bytes must land somewhere),
   and the CPU seconds per GB of curl and of the fetch.
3. The same fetch again: the bytes it downloads (0) and its time; and the whole
   `fovea-models fetch-weights` command for a cached entry (what a model pod's second
   start pays, process start included).

4. select -> Ready for a model whose weights are cached vs not, and the bytes the second
   start fetches, on the local cluster with the real operator: `bench/weights_ready.py`,
   run from here (`--no-cluster` skips it).

    python bench/weights.py                # 1 GiB
    python bench/weights.py --size-gb 0.2 --no-cluster  # quicker
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

from weight_servers import S3Server, free_port, write_random_file  # noqa: E402

TARGET_RATIO = 0.8
GB = 1e9
GIB = 1 << 30
BUCKET = "bench"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def curl_seconds(url: str, output: str = "/dev/null") -> tuple[float, int, float]:
    """`curl -o OUTPUT URL`: curl's own total time, the bytes it got, its CPU seconds."""
    cpu = children_cpu()
    done = subprocess.run(
        ["curl", "-sS", "-f", "-o", output, "-w", "%{time_total} %{size_download}", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    seconds, size = done.stdout.split()
    return float(seconds), int(size), children_cpu() - cpu


def fetch_seconds(uri: str, cache: Path, env: dict[str, str]) -> tuple[float, int, float]:
    """The fetcher in this process: wall seconds, bytes it downloaded, CPU seconds (all threads)."""
    from fovea.model_pod.weights.fetcher import FetchRequest, fetch_weights
    from fovea.model_pod.weights.progress import ProgressReporter

    cpu = time.process_time()
    started = time.perf_counter()
    outcome = fetch_weights(FetchRequest(uri, cache), ProgressReporter(None, uri), env)
    seconds = time.perf_counter() - started
    if outcome.phase != "Cached":
        raise RuntimeError(f"fetch of {uri} failed: {outcome.message}")
    return seconds, outcome.fetched_bytes, time.process_time() - cpu


def command_seconds(uri: str, cache: Path, env: dict[str, str]) -> float:
    """`fovea-models fetch-weights` as a process (the init container), wall seconds."""
    started = time.perf_counter()
    command = [sys.executable, "-P", "-m", "fovea.cli", "fetch-weights", "--source", uri]
    subprocess.run(
        [*command, "--cache", str(cache), "--no-report"],
        env={**os.environ, **env},
        capture_output=True,
        check=True,
        timeout=900,
    )
    return time.perf_counter() - started


def gbps(size: int, seconds: float) -> float:
    return size / GB / seconds if seconds > 0 else float("inf")


def measure(
    name: str,
    curl_url: str,
    uri: str,
    size: int,
    work: Path,
    env: dict[str, str],
    repeats: int,
) -> list[str]:
    """Best of `repeats` for curl and for a fetch into an empty cache, taken in turn."""
    cache = work / f"cache-{name}"
    curl_s = first_s = curl_cpu = first_cpu = to_file_s = float("inf")
    first_bytes = 0
    to_file = work / f"curl-{name}.bin"
    for _ in range(repeats):
        shutil.rmtree(cache, ignore_errors=True)
        seconds, got, cpu = curl_seconds(curl_url)
        if got != size:
            raise RuntimeError(f"curl got {got} bytes of {size} from {curl_url}")
        curl_s, curl_cpu = min(curl_s, seconds), min(curl_cpu, cpu)
        to_file_s = min(to_file_s, curl_seconds(curl_url, str(to_file))[0])
        to_file.unlink()
        seconds, first_bytes, cpu = fetch_seconds(uri, cache, env)
        first_s, first_cpu = min(first_s, seconds), min(first_cpu, cpu)
    second_s, second_bytes, _ = fetch_seconds(uri, cache, env)
    command_s = command_seconds(uri, cache, env)
    shutil.rmtree(cache, ignore_errors=True)
    ratio = gbps(size, first_s) / gbps(size, curl_s)
    verdict = "ok" if ratio >= TARGET_RATIO else f"below the {TARGET_RATIO} target"
    return [
        f"{name}: curl {gbps(size, curl_s):.2f} GB/s ({curl_s:.2f}s); "
        f"fetch into the cache {gbps(size, first_s):.2f} GB/s ({first_s:.2f}s, "
        f"{first_bytes} bytes, sha256 and rename included); ratio {ratio:.2f} ({verdict})",
        f"{name}: for reference, curl into a file on the cache's disk "
        f"{gbps(size, to_file_s):.2f} GB/s (fetch/that {to_file_s / first_s:.2f})",
        f"{name}: CPU seconds per GB: curl {curl_cpu / (size / GB):.2f}, "
        f"fetch {first_cpu / (size / GB):.2f} (receive + write to the cache + sha256)",
        f"{name}: second fetch downloaded {second_bytes} bytes in {second_s * 1000:.1f} ms; "
        f"the whole `fovea-models fetch-weights` command for it {command_s:.2f}s",
    ]


def select_to_ready_figures(args: argparse.Namespace) -> list[str]:
    """select -> Ready with the weights cached vs not, and the second start's 0 bytes.

    `bench/weights_ready.py` (the local cluster and the real operator) prints them; it
    runs as its own process, its output passed through. Skipped with `--no-cluster`.
    """
    if args.no_cluster:
        return ["select -> Ready cached vs not: skipped (--no-cluster)"]
    script = [sys.executable, "-P", str(REPO / "bench" / "weights_ready.py")]
    done = subprocess.run(
        [*script, "--rounds", str(args.rounds), "--size-mb", str(args.ready_size_mb)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    lines = done.stdout.splitlines()
    if done.returncode != 0:
        lines.append(f"bench/weights_ready.py exited {done.returncode}: {done.stderr[-2000:]}")
    return lines


def http_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = [sys.executable, "-P", str(REPO / "tests/support/weight_servers.py")]
    process = subprocess.Popen(
        [*server, "http", str(root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if (
            subprocess.run(["curl", "-sf", "-o", "/dev/null", "-I", url + "/object.bin"]).returncode
            == 0
        ):
            return process, url
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the HTTP file server did not start")


def run_all(args: argparse.Namespace, work: Path) -> list[str]:
    size = int(args.size_gb * GIB)
    root = work / "www"
    write_random_file(root / "object.bin", size)
    lines = [
        f"object: {size} bytes ({args.size_gb:g} GiB) of random data; GB/s = 1e9 bytes/s; "
        f"best of {args.repeats}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    ]
    cleanups: list[Callable[[], None]] = []
    try:
        process, url = http_server(root)
        cleanups.append(process.kill)
        lines += measure(
            "http", f"{url}/object.bin", f"{url}/object.bin", size, work, {}, args.repeats
        )

        s3 = S3Server().__enter__()
        cleanups.append(lambda: s3.__exit__(None, None, None))
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(root / "object.bin"), BUCKET, "model/object.bin")
        uri = f"s3://{BUCKET}/model/object.bin"
        # moto checks no signatures by default: curl gets the object by its path-style URL.
        curl_url = f"{s3.endpoint}/{BUCKET}/model/object.bin"
        lines += measure("s3", curl_url, uri, size, work, s3.env(), args.repeats)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
    return lines + select_to_ready_figures(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="object size in GiB")
    parser.add_argument(
        "--repeats", type=int, default=3, help="best of N for curl and the fetch (default 3)"
    )
    parser.add_argument(
        "--no-cluster", action="store_true", help="skip select -> Ready (bench/weights_ready.py)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="select -> Ready rounds")
    parser.add_argument(
        "--ready-size-mb", type=int, default=256, help="the select -> Ready model's weights"
    )
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        print("bench/weights.py needs curl", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fovea-bench-weights-") as work:
        for line in run_all(args, Path(work)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
