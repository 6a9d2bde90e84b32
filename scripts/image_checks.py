"""What can be checked of the image without a Docker engine (run by
scripts/check-image.sh):

- hadolint passes (every rule; an ignored rule needs a comment saying why);
- every COPY from the build context names a file or directory that exists
  and that .dockerignore does not exclude;
- every COPY from an earlier stage names something that stage makes:
  the builder's `cargo build` command is run here, on the host, exactly
  as written (WORKDIR /src is the repository), and every binary the
  runtime stage copies must then exist and be executable;
- the build tools that crates' build scripts run and the rust slim image
  lacks (it has gcc and libc6-dev only) are installed by a RUN of a build
  stage: the host has them, so the host build above cannot tell.
"""

import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKDIR = "/src"
# Crate in Cargo.lock -> the Debian package its build script needs beyond
# the rust:*-slim base (tikv-jemalloc-sys runs jemalloc's configure and make).
BUILD_TOOLS = {"tikv-jemalloc-sys": "make"}


def locked_crates():
    """Names of the packages in Cargo.lock."""
    return set(re.findall(r'^name = "([^"]+)"$', open(os.path.join(ROOT, "Cargo.lock")).read(), re.M))


def installs(run, package):
    """Whether the RUN command `run` apt-installs `package` (pinned or not)."""
    if "apt-get install" not in run:
        return False
    return any(w == package or w.startswith(package + "=") for w in shlex.split(run))


def instructions(path):
    """(instruction, arguments) per logical line."""
    logical, out = "", []
    for raw in open(path):
        line = raw.rstrip("\n")
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        word, _, rest = logical.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        logical = ""
    return out


def ignored(path, patterns):
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in patterns)


def main():
    hadolint, dockerfile = sys.argv[1], os.path.join(ROOT, "Dockerfile")
    problems = []
    lint = subprocess.run([hadolint, "--failure-threshold", "style", dockerfile],
                          capture_output=True, text=True)
    if lint.returncode != 0:
        problems.append(f"hadolint:\n{lint.stdout}{lint.stderr}")
    else:
        print("hadolint: no findings")
    patterns = [l.strip() for l in open(os.path.join(ROOT, ".dockerignore"))
                if l.strip() and not l.startswith("#")]
    stages, stage = {}, None
    for word, args in instructions(dockerfile):
        if word == "FROM":
            parts = args.split()
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"stage{len(stages)}"
            stages[stage] = {"runs": [], "copies": []}
        elif word == "RUN":
            stages[stage]["runs"].append(args)
        elif word == "COPY":
            parts = shlex.split(args)
            origin = next((p.split("=", 1)[1] for p in parts if p.startswith("--from=")), None)
            files = [p for p in parts if not p.startswith("--")]
            stages[stage]["copies"].append((origin, files[:-1], files[-1]))
    final = list(stages)[-1]
    builds = []
    for name, info in stages.items():
        for origin, sources, _ in info["copies"]:
            for source in sources:
                if origin is None:
                    local = os.path.normpath(os.path.join(ROOT, source))
                    rel = os.path.relpath(local, ROOT)
                    if not os.path.exists(local):
                        problems.append(f"{name}: COPY {source}: no such path")
                    elif rel != "." and ignored(rel, patterns):
                        problems.append(f"{name}: COPY {source} is excluded by .dockerignore")
                elif origin not in stages:
                    problems.append(f"{name}: COPY --from={origin}: no such stage")
        for run in info["runs"]:
            if run.startswith("cargo build"):
                builds.append((name, run))
    if not builds:
        problems.append("no `cargo build` in any stage")
    for name, command in builds:
        print(f"running the {name} stage's command here: {command}")
        result = subprocess.run(shlex.split(command), cwd=ROOT)
        if result.returncode != 0:
            problems.append(f"{name}: `{command}` failed")
    copied = 0
    for origin, sources, dest in stages[final]["copies"]:
        if origin is None:
            continue
        producer = stages.get(origin, {"runs": []})
        for source in sources:
            if source.startswith(WORKDIR + "/target/"):
                local = os.path.join(ROOT, source[len(WORKDIR) + 1:])
                if not (os.path.isfile(local) and os.access(local, os.X_OK)):
                    problems.append(f"{final}: COPY --from={origin} {source}: not built by "
                                    f"`{builds[0][1] if builds else '?'}`")
                else:
                    copied += 1
            elif not any(os.path.basename(source) in run for run in producer["runs"]):
                problems.append(f"{final}: COPY --from={origin} {source}: no RUN of {origin} makes it")
    for name, info in stages.items():
        if name == final:
            continue
        for origin, sources, _ in info["copies"]:
            if origin is not None:
                for source in sources:
                    if not any(os.path.basename(source) in run for run in stages[origin]["runs"]):
                        problems.append(f"{name}: COPY --from={origin} {source}: no RUN of {origin} makes it")
    crates = locked_crates()
    build_runs = [run for name, info in stages.items() if name != final for run in info["runs"]]
    for crate, package in sorted(BUILD_TOOLS.items()):
        if crate in crates and not any(installs(run, package) for run in build_runs):
            problems.append(f"{crate} needs `{package}` to build, and no build stage installs it")
    print(f"runtime stage: {copied} binaries copied, all built")
    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
