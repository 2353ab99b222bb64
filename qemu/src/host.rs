//! The host driver: gets the tools (qemu-system-x86, busybox-static, a Debian kernel extracted with
//! `dpkg -x`, cached under `target/qemu/`), builds the static guest program, packs the initramfs, boots
//! the guest under `qemu-system-x86_64 -accel tcg`, and answers the guest's `HOTSLAB READY` lines by
//! hot-adding and removing a 512 MiB pc-dimm on node 2 over QMP. It reports; it does not judge.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::cpio::Cpio;
use crate::protocol::{parse_line, GuestLine, GuestReport};
use crate::qmp::Qmp;

/// The static target the guest program is built for.
pub const MUSL: &str = "x86_64-unknown-linux-musl";
/// Size of the hot-plugged DIMM.
pub const DIMM_BYTES: u64 = 512 << 20;

/// The guest's ACPI HMAT (`-numa hmat-lb`): `(initiator, target, latency ns, bandwidth MiB/s)`
/// for every pair of initiator (the nodes with a CPU) and memory target. Node 2, the hot-plug
/// node, is the slow one, nearest to node 0's CPU; the kernel reports each target's figures from
/// its best initiator in `nodeN/access0/initiators/`.
pub const HMAT: [(u16, u16, u32, u32); 6] = [
    (0, 0, 80, 20480),
    (0, 1, 130, 10240),
    (0, 2, 250, 5120),
    (1, 0, 130, 10240),
    (1, 1, 80, 20480),
    (1, 2, 300, 4096),
];

/// The SLIT (`-numa dist`): `(a, b, distance)`, symmetric; node 2 is the farthest.
pub const DISTANCES: [(u16, u16, u8); 3] = [(0, 1, 20), (0, 2, 28), (1, 2, 28)];

/// The figures the guest kernel should report for `target` in `access0/initiators/`: those of the
/// initiator with the lowest latency.
pub fn hmat_access0(target: u16) -> Option<(u32, u32)> {
    HMAT.iter()
        .filter(|e| e.1 == target)
        .min_by_key(|e| e.2)
        .map(|e| (e.2, e.3))
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Hot-add / remove cycles.
    pub cycles: u32,
    /// Install missing Debian packages with apt-get (needs root).
    pub install: bool,
    /// Boot to a shell instead of running the test (interactive; serial on this terminal).
    pub shell: bool,
    /// Echo the guest console to stderr as it arrives.
    pub echo: bool,
    /// Have the guest print every kernel uevent (`HOTSLAB UEVENT ...`) into the console log.
    pub dump_uevents: bool,
    /// Give up after this long (boot + all cycles).
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cycles: 2,
            install: false,
            shell: false,
            echo: false,
            dump_uevents: false,
            timeout: Duration::from_secs(600),
        }
    }
}

/// Why the harness could not run (not a guest check failure).
#[derive(Debug)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostError {}

impl From<io::Error> for HostError {
    fn from(e: io::Error) -> Self {
        HostError(e.to_string())
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, HostError> {
    Err(HostError(msg.into()))
}

/// Timings of one hot-add / remove cycle, measured on the host.
#[derive(Clone, Copy, Debug, Default)]
pub struct CycleTiming {
    /// `device_add` sent → the guest's follower saw node 2 online.
    pub add_to_online: Option<Duration>,
    /// `device_del` sent → the guest's follower saw node 2 offline.
    pub del_to_offline: Option<Duration>,
    /// `device_del` sent → QEMU's DEVICE_DELETED (the guest kernel finished the removal).
    pub del_to_deleted: Option<Duration>,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct RunOutcome {
    /// What the guest reported.
    pub report: GuestReport,
    /// Tools, kernel, guest build and initramfs.
    pub prepare: Duration,
    /// QEMU start → the guest's first `READY` line.
    pub boot: Option<Duration>,
    /// One entry per cycle.
    pub cycles: Vec<CycleTiming>,
    /// QEMU start → QEMU exit.
    pub guest_total: Duration,
    /// The guest's serial console.
    pub console_log: PathBuf,
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.report)?;
        let ms =
            |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
        writeln!(
            f,
            "prepare {:.1} s, boot {}, guest total {:.1} s, console {}",
            self.prepare.as_secs_f64(),
            ms(self.boot),
            self.guest_total.as_secs_f64(),
            self.console_log.display()
        )?;
        for (i, c) in self.cycles.iter().enumerate() {
            writeln!(
                f,
                "cycle {}: device_add -> online {}, device_del -> offline {}, device_del -> DEVICE_DELETED {}",
                i + 1,
                ms(c.add_to_online),
                ms(c.del_to_offline),
                ms(c.del_to_deleted)
            )?;
        }
        Ok(())
    }
}

/// The repository root (the folder above `qemu/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `target/qemu/` under the repository root: kernel cache, guest build, run files.
pub fn cache_dir() -> PathBuf {
    repo_root().join("target").join("qemu")
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn run_cmd(cmd: &mut Command) -> Result<String, HostError> {
    let out = cmd
        .output()
        .map_err(|e| HostError(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian packages the harness needs, and whether each is missing.
pub fn missing_tools() -> Vec<&'static str> {
    let mut m = Vec::new();
    if which("qemu-system-x86_64").is_none() {
        m.push("qemu-system-x86");
    }
    if which("busybox").is_none() && !Path::new("/bin/busybox").is_file() {
        m.push("busybox-static");
    }
    if which("cc").is_none() {
        m.push("gcc");
    }
    if which("numactl").is_none() {
        m.push("numactl");
    }
    if which("ldd").is_none() {
        m.push("libc-bin");
    }
    if which("dpkg").is_none() || which("apt-get").is_none() {
        m.push("apt (a Debian host)");
    }
    m
}

/// Installs what is missing with apt-get (root only).
pub fn install_tools() -> Result<(), HostError> {
    let missing = missing_tools();
    if missing.is_empty() {
        return Ok(());
    }
    if missing.iter().any(|m| m.starts_with("apt")) {
        return err("not a Debian host: apt-get and dpkg are needed");
    }
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

/// The kernel image: the `linux-image-<version>-amd64` package that `linux-image-amd64` depends on,
/// downloaded with `apt-get download` and unpacked with `dpkg -x` into `target/qemu/kernel/<package>/`
/// (once; later runs reuse it).
pub fn kernel() -> Result<PathBuf, HostError> {
    let deps = run_cmd(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string);
    let pkg = match pkg {
        Some(p) => p,
        None => {
            // A fresh machine may have no package lists yet.
            run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
            let deps = run_cmd(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
            match deps
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends:"))
                .map(str::trim)
                .find(|p| p.starts_with("linux-image-"))
            {
                Some(p) => p.to_string(),
                None => {
                    return err("apt-cache cannot tell which kernel linux-image-amd64 depends on")
                }
            }
        }
    };
    let dir = cache_dir().join("kernel").join(&pkg);
    if let Some(k) = find_vmlinuz(&dir) {
        return Ok(k);
    }
    let dl = cache_dir().join("kernel").join("download");
    std::fs::create_dir_all(&dl)?;
    run_cmd(
        Command::new("apt-get")
            .args(["download", "-qq", &pkg])
            .current_dir(&dl),
    )?;
    let deb = std::fs::read_dir(&dl)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| HostError(format!("apt-get download {pkg} left no .deb")))?;
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    run_cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&tmp))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    let _ = std::fs::remove_file(&deb);
    find_vmlinuz(&dir).ok_or_else(|| HostError(format!("no boot/vmlinuz-* in {pkg}")))
}

fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("boot"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

fn musl_installed() -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(MUSL)
        .join("lib")
        .is_dir()
}

/// The guest's static programs.
pub struct GuestBins {
    /// `hotslab-guest`: the test driver inside the guest (its own slab domain).
    pub guest: PathBuf,
    /// `hotslab-guest-alloc`: `SlabAlloc` as global allocator.
    pub alloc: PathBuf,
}

/// Builds the guest programs statically: for musl (adding the target with rustup if needed), or
/// else for glibc with `+crt-static`. hwlocality is off (the hotslab crates are used without default
/// features).
pub fn build_guest() -> Result<GuestBins, HostError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = cache_dir().join("cargo");
    if !musl_installed() {
        let _ = Command::new("rustup")
            .args(["target", "add", MUSL])
            .status();
    }
    let (target, rustflags) = if musl_installed() {
        (MUSL, None)
    } else {
        (
            "x86_64-unknown-linux-gnu",
            Some("-C target-feature=+crt-static"),
        )
    };
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--release",
        "--bin",
        "hotslab-guest",
        "--bin",
        "hotslab-guest-alloc",
        "--target",
        target,
    ])
    .arg("--manifest-path")
    .arg(repo_root().join("qemu").join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    if let Some(f) = rustflags {
        cmd.env("RUSTFLAGS", f);
    }
    let st = cmd.status().map_err(|e| HostError(format!("cargo: {e}")))?;
    if !st.success() {
        return err(format!("building the guest program failed ({st})"));
    }
    let dir = target_dir.join(target).join("release");
    Ok(GuestBins {
        guest: dir.join("hotslab-guest"),
        alloc: dir.join("hotslab-guest-alloc"),
    })
}

/// Builds `libhotslab.so` for the host's glibc (`cargo build --release -p hotslab-capi` in the root
/// workspace, `target/release/`): the guest runs a C program under `LD_PRELOAD` with it, on the
/// host's own loader and libc packed into the initramfs.
pub fn build_preload_lib() -> Result<PathBuf, HostError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = repo_root();
    let st = Command::new(&cargo)
        .args(["build", "--release", "-p", "hotslab-capi"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target"))
        .current_dir(&root)
        .status()
        .map_err(|e| HostError(format!("cargo: {e}")))?;
    if !st.success() {
        return err(format!("building libhotslab.so failed ({st})"));
    }
    Ok(root.join("target").join("release").join("libhotslab.so"))
}

/// Compiles the guest's C program (`qemu/c/preload_guest.c`) with the host's `cc`, dynamically
/// linked against the host's glibc.
pub fn build_preload_program(out: &Path) -> Result<PathBuf, HostError> {
    let src = repo_root().join("qemu").join("c").join("preload_guest.c");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    run_cmd(
        Command::new(cc)
            .args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
            .arg(out)
            .arg(&src),
    )?;
    Ok(out.to_path_buf())
}

/// The shared objects `ldd` says `elf` needs, as `(path in the guest, file on the host)`: the loader
/// at its own path (`/lib64/ld-linux-x86-64.so.2`), each library at the path it resolved to.
pub fn shared_deps(elf: &Path) -> Result<Vec<(String, PathBuf)>, HostError> {
    let out = run_cmd(Command::new("ldd").arg(elf))?;
    let mut deps = Vec::new();
    for l in out.lines().map(str::trim) {
        let path = match l.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => l.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue; // linux-vdso, "not a dynamic executable"
        };
        let host = std::fs::canonicalize(path)
            .map_err(|e| HostError(format!("{path} (from ldd {}): {e}", elf.display())))?;
        deps.push((path.to_string(), host));
    }
    if deps.is_empty() {
        return err(format!("ldd {}: no shared objects", elf.display()));
    }
    Ok(deps)
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "HOTSLAB BOOTED $(uname -r)"
if grep -q hotslab.shell /proc/cmdline; then
    echo "hotslab: shell (the test program is /hotslab-guest); poweroff -f to quit"
    exec setsid cttyhack sh
fi
/hotslab-guest
echo "HOTSLAB EXIT $?"
poweroff -f
"#;

/// What goes into the initramfs besides busybox and `/init`.
pub struct GuestFiles {
    /// The static guest programs.
    pub bins: GuestBins,
    /// The C program (dynamically linked).
    pub preload_program: PathBuf,
    /// libhotslab.so.
    pub preload_lib: PathBuf,
    /// The host's numactl (dynamically linked; its libraries are packed too).
    pub numactl: PathBuf,
}

/// Packs the initramfs: busybox with one symlink per applet, `/init`, `/dev/console`, the guest
/// programs (`/hotslab-guest`, `/hotslab-guest-alloc`, `/preload-guest`), `/lib/libhotslab.so`,
/// `/usr/bin/numactl`, and the host's loader and libraries the C program, libhotslab.so and
/// numactl need, at the paths `ldd` names.
pub fn initramfs(files: &GuestFiles, out: &Path) -> Result<(), HostError> {
    let busybox = which("busybox")
        .or_else(|| Some(PathBuf::from("/bin/busybox")).filter(|p| p.is_file()))
        .ok_or_else(|| HostError("busybox not found (apt-get install busybox-static)".into()))?;
    let list = run_cmd(Command::new(&busybox).arg("--list"))?;
    let f = std::fs::File::create(out)?;
    let mut c = Cpio::new(io::BufWriter::new(f));
    let mut libs = shared_deps(&files.preload_program)?;
    libs.extend(shared_deps(&files.preload_lib)?);
    libs.extend(shared_deps(&files.numactl)?);
    libs.push(("/usr/bin/numactl".into(), files.numactl.clone()));
    libs.sort();
    libs.dedup();
    let mut dirs: Vec<String> = ["bin", "dev", "proc", "sys", "tmp", "root", "lib", "usr/bin"]
        .map(String::from)
        .to_vec();
    for (guest_path, _) in &libs {
        let mut p = Path::new(guest_path).parent();
        while let Some(d) = p.filter(|d| d != &Path::new("/")) {
            dirs.push(d.to_string_lossy().trim_start_matches('/').to_string());
            p = d.parent();
        }
    }
    dirs.sort_by_key(|d| (d.matches('/').count(), d.clone()));
    dirs.dedup();
    for d in &dirs {
        c.dir(d)?;
    }
    c.char_dev("dev/console", 0o600, 5, 1)?;
    c.char_dev("dev/null", 0o666, 1, 3)?;
    c.file("bin/busybox", 0o755, &std::fs::read(&busybox)?)?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        // A link named busybox would point at itself (init fails with ELOOP).
        if applet != "busybox" && !applet.contains('/') {
            c.symlink(&format!("bin/{applet}"), "busybox")?;
        }
    }
    c.file("init", 0o755, INIT.as_bytes())?;
    c.file("hotslab-guest", 0o755, &std::fs::read(&files.bins.guest)?)?;
    c.file(
        "hotslab-guest-alloc",
        0o755,
        &std::fs::read(&files.bins.alloc)?,
    )?;
    c.file(
        "preload-guest",
        0o755,
        &std::fs::read(&files.preload_program)?,
    )?;
    c.file(
        "lib/libhotslab.so",
        0o755,
        &std::fs::read(&files.preload_lib)?,
    )?;
    for (guest_path, host) in &libs {
        if guest_path.ends_with("/libhotslab.so") {
            continue;
        }
        c.file(guest_path, 0o755, &std::fs::read(host)?)?;
    }
    c.finish()?.flush()?;
    Ok(())
}

/// Everything needed to boot: kernel, initramfs.
pub struct Prepared {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// How long preparing took.
    pub took: Duration,
}

/// Gets the tools (installing them if `opts.install`), the kernel, builds the guest and the initramfs.
pub fn prepare(opts: &Options) -> Result<Prepared, HostError> {
    let t = Instant::now();
    if opts.install {
        install_tools()?;
    }
    let missing = missing_tools();
    if !missing.is_empty() {
        return err(format!(
            "missing: {} (apt-get install -y qemu-system-x86 busybox-static, or run qemu/run.sh)",
            missing.join(", ")
        ));
    }
    let kernel = kernel()?;
    let bins = build_guest()?;
    let preload_lib = build_preload_lib()?;
    let run = cache_dir().join("run");
    std::fs::create_dir_all(&run)?;
    let preload_program = build_preload_program(&run.join("preload-guest"))?;
    let initrd = run.join("initramfs.cpio");
    let numactl = which("numactl")
        .ok_or_else(|| HostError("numactl not found (apt-get install numactl)".into()))?;
    let files = GuestFiles {
        bins,
        preload_program,
        preload_lib,
        numactl,
    };
    initramfs(&files, &initrd)?;
    Ok(Prepared {
        kernel,
        initrd,
        took: t.elapsed(),
    })
}

/// The QEMU command line: 2 CPUs, nodes 0 and 1 with 512 MiB each and one CPU each, node 2 without
/// memory; room for hot-plugged DIMMs (`slots=4,maxmem=4G`); an HMAT ([`HMAT`]) and SLIT
/// ([`DISTANCES`]) in which node 2 is the slow, far one; QMP as a client of `qmp_sock`.
pub fn qemu_command(p: &Prepared, qmp_sock: &Path, opts: &Options) -> Command {
    let mut append =
        String::from("console=ttyS0 quiet panic=-1 memhp_default_state=online movable_node");
    append.push_str(&format!(" hotslab.cycles={}", opts.cycles));
    if opts.shell {
        append.push_str(" hotslab.shell");
    }
    if opts.dump_uevents {
        append.push_str(" hotslab.dump_uevents=1");
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-machine",
        "pc,hmat=on",
        "-cpu",
        "max",
        "-smp",
        "2",
    ])
    .args(["-m", "1G,slots=4,maxmem=4G"])
    .args(["-object", "memory-backend-ram,id=m0,size=512M"])
    .args(["-object", "memory-backend-ram,id=m1,size=512M"])
    // With hmat=on every node names its initiator; node 2's is node 0's CPU.
    .args(["-numa", "node,nodeid=0,cpus=0,memdev=m0,initiator=0"])
    .args(["-numa", "node,nodeid=1,cpus=1,memdev=m1,initiator=1"])
    .args(["-numa", "node,nodeid=2,initiator=0"]);
    for (a, b, d) in DISTANCES {
        cmd.args(["-numa", &format!("dist,src={a},dst={b},val={d}")]);
    }
    for (i, t, lat, bw) in HMAT {
        let lb = format!("hmat-lb,initiator={i},target={t},hierarchy=memory");
        cmd.args([
            "-numa",
            &format!("{lb},data-type=access-latency,latency={lat}"),
        ]);
        cmd.args([
            "-numa",
            &format!("{lb},data-type=access-bandwidth,bandwidth={bw}M"),
        ]);
    }
    cmd.arg("-kernel")
        .arg(&p.kernel)
        .arg("-initrd")
        .arg(&p.initrd)
        .args(["-append", &append])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-qmp")
        .arg(format!("unix:{}", qmp_sock.display()));
    cmd
}

struct Guest {
    child: Child,
    lines: Receiver<(Instant, String)>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn spawn_console_reader(
    out: std::process::ChildStdout,
    log: PathBuf,
    echo: bool,
) -> io::Result<Receiver<(Instant, String)>> {
    let (tx, rx) = mpsc::channel();
    let mut file = io::BufWriter::new(std::fs::File::create(log)?);
    std::thread::Builder::new()
        .name("guest-console".into())
        .spawn(move || {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
                if echo {
                    eprintln!("guest| {line}");
                }
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Prepares, boots the guest and drives the hot-add / remove cycles it asks for. Returns what the
/// guest reported; `Err` only when the harness itself could not run (tools, kernel, build, QEMU).
pub fn run(opts: &Options) -> Result<RunOutcome, HostError> {
    let prepared = prepare(opts)?;
    boot_and_drive(&prepared, opts)
}

/// Boots a prepared guest and drives it.
pub fn boot_and_drive(p: &Prepared, opts: &Options) -> Result<RunOutcome, HostError> {
    let run = cache_dir().join("run");
    std::fs::create_dir_all(&run)?;
    let qmp_sock = run.join("qmp.sock");
    let _ = std::fs::remove_file(&qmp_sock);
    let listener = UnixListener::bind(&qmp_sock)?;
    let console_log = run.join("console.log");

    let mut cmd = qemu_command(p, &qmp_sock, opts);
    if opts.shell {
        // Interactive: the serial console is this terminal.
        cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let _qmp = Qmp::accept(&listener, Duration::from_secs(60))?;
        eprintln!("hotslab-qemu: guest shell; QMP at {}", qmp_sock.display());
        child.wait()?;
        return err("shell session ended");
    }
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| HostError(format!("qemu-system-x86_64: {e}")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = spawn_console_reader(stdout, console_log.clone(), opts.echo)?;
    let mut guest = Guest { child, lines };
    let mut qmp = Qmp::accept(&listener, Duration::from_secs(60))?;
    let cmd_timeout = Duration::from_secs(60);

    let deadline = start + opts.timeout;
    let mut report = GuestReport::default();
    let mut boot = None;
    let mut cycles = vec![CycleTiming::default(); opts.cycles as usize];
    let mut added_at: Vec<Option<Instant>> = vec![None; opts.cycles as usize];
    let mut deleted_at: Vec<Option<Instant>> = vec![None; opts.cycles as usize];
    let slot = |c: u32| {
        (c as usize)
            .checked_sub(1)
            .filter(|&i| i < opts.cycles as usize)
    };
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (t, text) = match guest.lines.recv_timeout(wait) {
            Ok(x) => x,
            Err(RecvTimeoutError::Timeout) => {
                return err(format!(
                    "timed out after {:?}; guest said so far: {report}console: {}",
                    opts.timeout,
                    console_log.display()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => break, // QEMU exited
        };
        let Some(l) = parse_line(&text) else { continue };
        report.add(&l);
        match l {
            GuestLine::ReadyAdd(c) => {
                let i = slot(c).ok_or_else(|| HostError(format!("unexpected cycle {c}")))?;
                boot.get_or_insert(t - start);
                qmp.execute(
                    "object-add",
                    Some(&format!(
                        r#"{{"qom-type":"memory-backend-ram","id":"hp{c}","size":{DIMM_BYTES}}}"#
                    )),
                    cmd_timeout,
                )?;
                added_at[i] = Some(Instant::now());
                qmp.execute(
                    "device_add",
                    Some(&format!(
                        r#"{{"driver":"pc-dimm","id":"dimm{c}","memdev":"hp{c}","node":2}}"#
                    )),
                    cmd_timeout,
                )?;
            }
            GuestLine::ReadyRemove(c) => {
                let i = slot(c).ok_or_else(|| HostError(format!("unexpected cycle {c}")))?;
                let sent = Instant::now();
                deleted_at[i] = Some(sent);
                qmp.execute(
                    "device_del",
                    Some(&format!(r#"{{"id":"dimm{c}"}}"#)),
                    cmd_timeout,
                )?;
                let done = qmp.wait_event(
                    "DEVICE_DELETED",
                    &format!(r#""device":"dimm{c}""#),
                    cmd_timeout,
                )?;
                cycles[i].del_to_deleted = Some(done.saturating_duration_since(sent));
                qmp.execute(
                    "object-del",
                    Some(&format!(r#"{{"id":"hp{c}"}}"#)),
                    cmd_timeout,
                )?;
            }
            GuestLine::Seen { online, cycle } => {
                if let Some(i) = slot(cycle) {
                    if online {
                        cycles[i].add_to_online =
                            added_at[i].map(|a| t.saturating_duration_since(a));
                    } else {
                        cycles[i].del_to_offline =
                            deleted_at[i].map(|a| t.saturating_duration_since(a));
                    }
                }
            }
            _ => {}
        }
    }
    let _ = guest.child.wait();
    let guest_total = start.elapsed();
    std::fs::write(run.join("qmp.log"), qmp.transcript.join("\n") + "\n")?;
    Ok(RunOutcome {
        report,
        prepare: p.took,
        boot,
        cycles,
        guest_total,
        console_log,
    })
}
