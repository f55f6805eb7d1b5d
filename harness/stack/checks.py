"""What is checked with Docker before a cell starts: the rendered haproxy.cfg by the
version's own binary (``haproxy -c`` in a throw-away container, no network), and the
rendered compose.yaml by Compose (``docker compose config``). Either refusal stops the
run before anything is started."""

from __future__ import annotations

from pathlib import Path

from harness.errors import CellError, SpecError
from harness.stack import security
from harness.stack.compose import CommandLog, Compose


def haproxy_config(tag: str, folder: Path, log: CommandLog) -> None:
    """``haproxy -c`` on the cell's config with the version's own binary; SpecError when
    HAProxy rejects it, CellError when Docker could not run the check at all."""
    # --mount, not -v: it takes a path with ':' in it, and refuses a missing source
    # instead of creating an empty root-owned folder in its place. Its value is CSV:
    # the source is quoted, so a ',' in it is part of the path.
    mounts = [("haproxy.cfg", "/etc/harness/haproxy.cfg")]
    if (folder / "certs").is_dir():
        mounts.append(("certs", "/etc/harness/certs"))
    flags = [
        f'--mount=type=bind,"source={str(folder / name).replace(chr(34), chr(34) * 2)}",'
        f"target={target},readonly"
        for name, target in mounts
    ]
    proc = log.run(
        [
            "docker", "run", "--rm", "--network", "none", "--label", "harness=1",
            "--label", f"harness.run={folder.parent.name}", *flags,
            # as the cell will run it: its user must be able to read the config and key
            *security.docker_run_flags("haproxy"),
            "--entrypoint", "haproxy", tag, "-c", "-f", "/etc/harness/haproxy.cfg",
        ],
        timeout=60,
        check=False,
    )  # fmt: skip
    out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
    if proc.returncode == 125:  # docker's own failure: the container never ran haproxy
        raise CellError(
            f"{folder}: Docker could not run the config check of this cell: {out}\n"
            f"(command and output: {log.path})"
        )
    if proc.returncode != 0:
        raise SpecError(
            f"{folder / 'haproxy.cfg'}: HAProxy ({tag}) rejects the rendered config:\n{out}\n"
            "Parameters are checked before rendering, so the cause is the template (a local "
            "edit: git diff haproxy/) or a directive this HAProxy version lacks; nothing has "
            "been started."
        )


def compose_file(project: str, folder: Path, log: CommandLog, name: str = "compose.yaml") -> None:
    """``docker compose config`` on the cell's compose.yaml (or ``name``, one engine's
    part): SpecError when Compose rejects it (the harness's own doing, never the user's
    input)."""
    try:
        Compose(project, folder / name, log).run("config", "--quiet", timeout=60)
    except CellError as exc:
        raise SpecError(
            f"{folder / name}: Compose rejects the rendered file: {exc}\n"
            "This is the harness's own doing (harness/stack/compose_file.py), not your input; "
            "please report it. Nothing has been started."
        ) from exc
