# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot and destroy Debian trixie test guests under qemu, like small fleet hosts.

Used by the Molecule create/destroy playbooks, the demo and the benchmarks:

  testguest image                              build (once) and print the image directory
  testguest up NAME --run-dir DIR [--cpus N --memory MiB --data-disk SIZE]
                                               boot a guest, wait for SSH, print its
                                               instance config as JSON
  testguest down NAME --run-dir DIR            stop the guest and delete its disks
  testguest reap [--run-dir DIR] [--name N]    kill every test guest (or those of DIR / named N)

Each guest boots a throwaway qcow2 overlay on the cached pristine image, so every run
starts clean. Acceleration: LOCKBOX_ACCEL=tcg (default here: nested KVM is unusable on
this machine kind) or kvm on hosts where KVM works; LOCKBOX_QEMU names another qemu binary
(a wrapper script may add options such as -L).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROCESS_TAG = "lockbox-testguest"
SSH_OPTIONS = [
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
]


def log(message):
    print(f"testguest: {message}", file=sys.stderr, flush=True)


def image_dir():
    out = subprocess.run([str(HERE / "build-image")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accel_args(cpus):
    accel = os.environ.get("LOCKBOX_ACCEL", "tcg")
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel != "tcg":
        raise SystemExit(f"testguest: LOCKBOX_ACCEL must be tcg or kvm, not {accel!r}")
    # thread=multi runs one host thread per vCPU; the large translation cache avoids
    # re-translating the kernel's hot paths.
    thread = "multi" if cpus > 1 else "single"
    return ["-accel", f"tcg,thread={thread},tb-size=512", "-cpu", os.environ.get("LOCKBOX_GUEST_CPU", "max")]


def guest_paths(run_dir, name):
    base = Path(run_dir) / name
    return {
        "root": base.with_suffix(".root.qcow2"),
        "data": base.with_suffix(".data.qcow2"),
        "pid": base.with_suffix(".pid"),
        "console": base.with_suffix(".console.log"),
        "config": base.with_suffix(".json"),
        # qemu's human monitor, for diagnosis (`info jit` tells whether TCG's code cache overflows).
        "monitor": base.with_suffix(".monitor"),
    }


def wait_for_ssh(port, identity, deadline):
    """SSH answers only once sshd runs: qemu accepts the forwarded port at once."""
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["ssh", *SSH_OPTIONS, "-i", str(identity), "-p", str(port), "root@127.0.0.1",
             "systemctl is-system-running --wait >/dev/null 2>&1; echo ready"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=120, check=False)
        if probe.stdout.strip() == "ready":
            return True
        time.sleep(2)
    return False


def qemu_alive(pid_file):
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def up(args):
    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = guest_paths(run_dir, args.name)
    if qemu_alive(paths["pid"]):
        print(paths["config"].read_text())
        return 0
    image = image_dir()
    started = time.monotonic()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                    "-b", str(image / "disk.img"), str(paths["root"])], check=True)
    # An empty second disk lets tests use a real block device (/dev/vdb).
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(paths["data"]), args.data_disk],
                   check=True)
    port = free_port()
    cmd = [
        os.environ.get("LOCKBOX_QEMU", "qemu-system-x86_64"),
        "-name", f"{args.name},process={PROCESS_TAG}:{args.name}",
        *accel_args(args.cpus),
        "-smp", str(args.cpus), "-m", str(args.memory),
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
        # panic=5: a TCG guest on a loaded host very rarely panics while booting (also
        # when a test reboots it); the kernel then restarts itself instead of hanging.
        # norandmaps: TCG keys its translated code by virtual address, so with ASLR every new
        # process (each Ansible module run, each docker or cryptsetup command) is translated
        # afresh; without it, translations are reused: docker --version 0.4 s -> 0.12 s, an
        # Ansible module run -20 %, 10x less generated code (docs/testing.md). Test guests only,
        # as are: transparent_hugepage=never (khugepaged took ~5 % of a busy guest's CPU scanning
        # memory, which TCG makes dear) and mitigations=off (retpolines and RSB filling on every
        # kernel indirect call and context switch, for an emulated CPU no attacker shares).
        "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet panic=5 norandmaps "
                   "transparent_hugepage=never mitigations=off",
        "-drive", f"file={paths['root']},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-drive", f"file={paths['data']},if=virtio,format=qcow2,cache=unsafe",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        # No floppy, CD-ROM or VGA: nothing the guest would probe at boot.
        "-nodefaults", "-display", "none", "-serial", f"file:{paths['console']}",
        "-daemonize", "-pidfile", str(paths["pid"]),
    ]
    # A unix socket's path has at most 107 bytes: a deep run directory goes without the monitor.
    if len(os.fsencode(paths["monitor"])) < 108:
        cmd += ["-monitor", f"unix:{paths['monitor']},server,nowait"]
    for attempt in (1, 2):
        subprocess.run(cmd, check=True)
        if wait_for_ssh(port, image / "id_ed25519", time.monotonic() + args.timeout):
            break
        tail = paths["console"].read_text(errors="replace")[-2000:]
        stop_pid(qemu_alive(paths["pid"]) or 0)
        # A TCG guest on a loaded host very rarely panics while booting; boot it once more.
        if attempt == 1 and "Kernel panic" in tail:
            log(f"{args.name} panicked while booting; booting it again")
            continue
        down_guest(run_dir, args.name)
        raise SystemExit(f"testguest: {args.name} did not answer SSH in {args.timeout}s; console:\n{tail}")
    config = {
        "instance": args.name,
        "address": "127.0.0.1",
        "user": "root",
        "port": port,
        "identity_file": str(image / "id_ed25519"),
        "boot_seconds": round(time.monotonic() - started, 1),
        "accel": os.environ.get("LOCKBOX_ACCEL", "tcg"),
    }
    paths["config"].write_text(json.dumps(config))
    log(f"{args.name} answered SSH on port {port} {config['boot_seconds']}s after qemu started")
    print(json.dumps(config))
    return 0


def stop_pid(pid, grace=10.0):
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def down_guest(run_dir, name):
    paths = guest_paths(run_dir, name)
    pid = qemu_alive(paths["pid"])
    if pid:
        stop_pid(pid)
    for key in ("root", "data", "pid", "config", "monitor"):
        paths[key].unlink(missing_ok=True)
    return pid is not None


def down(args):
    was_running = down_guest(Path(args.run_dir).resolve(), args.name)
    print(json.dumps({"instance": args.name, "stopped": was_running}))
    return 0


def tagged_qemu_pids(run_dir=None, names=None):
    """Every qemu we started carries PROCESS_TAG:<name> in its argv."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if not any(PROCESS_TAG in a for a in text):
            continue
        if run_dir and not any(str(run_dir) in a for a in text):
            continue
        # qemu's "-name NAME,process=lockbox-testguest:NAME"
        if names and not any(a.endswith("process=%s:%s" % (PROCESS_TAG, n)) for n in names for a in text):
            continue
        yield int(proc.name)


def reap(args):
    run_dir = Path(args.run_dir).resolve() if args.run_dir else None
    pids = list(tagged_qemu_pids(run_dir, args.name))
    for pid in pids:
        stop_pid(pid, grace=3.0)
    print(json.dumps({"reaped": pids}))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image").set_defaults(func=lambda a: print(image_dir()) or 0)
    p_up = sub.add_parser("up")
    p_up.add_argument("name")
    p_up.add_argument("--run-dir", required=True)
    p_up.add_argument("--cpus", type=int, default=int(os.environ.get("LOCKBOX_GUEST_CPUS", "2")))
    p_up.add_argument("--memory", type=int, default=int(os.environ.get("LOCKBOX_GUEST_MEMORY", "2048")))
    p_up.add_argument("--data-disk", default="4G")
    p_up.add_argument("--timeout", type=int, default=300)
    p_up.set_defaults(func=up)
    p_down = sub.add_parser("down")
    p_down.add_argument("name")
    p_down.add_argument("--run-dir", required=True)
    p_down.set_defaults(func=down)
    p_reap = sub.add_parser("reap")
    p_reap.add_argument("--run-dir", help="only guests whose disks are under this directory")
    p_reap.add_argument("--name", action="append", help="only guests of this name (repeatable)")
    p_reap.set_defaults(func=reap)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
