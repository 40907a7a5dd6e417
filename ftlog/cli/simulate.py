"""``ftlog simulate``: serve the built-in simulated fine-tuning API."""

from __future__ import annotations

import click

from ftlog.cli.options import verbosity_options


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Keep the loopback default unless you mean to expose it.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="TCP port; 0 picks a free one (the URL is printed on stderr).",
)
@click.option(
    "--jobs",
    "n_jobs",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="How many jobs to simulate; half exist at start, the rest appear over time.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Simulated seconds per real second.",
)
@click.option(
    "--at-end",
    is_flag=True,
    help="Stop the clock once every job has finished, so the answers never change "
    "(for benchmarks; --speed is then ignored).",
)
@click.option(
    "--faults",
    metavar="SPEC",
    default="",
    help="Inject faults, e.g. '429:0.1,500:every=4,slow:first=1:3': KIND:WHEN[:ARG] items; "
    "KIND is 429, 500, 502, 503, slow, malformed, reset or missing; WHEN a probability, "
    "first=N or every=N; ARG is Retry-After (429) or the delay (slow) in seconds.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for the jobs and the random faults; the same seed gives the same run.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Answer every request after this delay, as a real network and API would (0.05 = 50 ms).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="Accept only this bearer token. Default: any non-empty token.",
)
@click.option(
    "--flavor",
    type=click.Choice(["nebius", "openai"]),
    default="nebius",
    show_default=True,
    help="Shape of the job objects: Nebius AI Studio's or OpenAI's (no step counts, "
    "trained_tokens null until the job ends, progress in the metrics events).",
)
@verbosity_options
def simulate(
    host: str,
    port: int,
    n_jobs: int,
    speed: float,
    at_end: bool,
    faults: str,
    seed: int,
    latency: float,
    token: str | None,
    flavor: str,
) -> None:
    """Serve a simulated OpenAI-compatible fine-tuning API until Ctrl-C.

    Jobs go through validating_files, queued, running and end succeeded, failed or
    cancelled, in simulated time. Point ftlog at it with FTLOG_BASE_URL set to the URL
    printed on stderr. Request counters: GET /_sim/stats. POST /_sim/touch?n=N (from
    loopback only) changes the N newest jobs.
    """
    import signal

    from ftlog.simulator import ManualClock, SimulatedAPI, make_jobs, parse_faults, serve

    try:
        fault_rules = parse_faults(faults)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--faults") from None
    jobs = make_jobs(n_jobs, seed, flavor="openai" if flavor == "openai" else "nebius")
    clock = ManualClock(max((j.finished_at for j in jobs), default=0)) if at_end else None
    api = SimulatedAPI(
        jobs, clock=clock, speed=speed, seed=seed, faults=fault_rules, token=token, latency=latency
    )

    def announce(url: str) -> None:
        pace = "clock stopped after every job finished" if at_end else f"speed {speed:g}x"
        if latency:
            pace += f", {latency * 1000:g} ms per request"
        click.echo(f"ftlog simulate: serving {n_jobs} jobs at {url} ({pace})", err=True)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as cleanly as on Ctrl-C
    try:
        serve(api, host, port, on_ready=announce)
    except OSError as err:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {err.strerror or err}"
        ) from None
