//! What the tests that run the real `meshguard` binary share: one run within the limits a CI
//! container sets (address space, wall clock, peak resident set), its output, and a crash told
//! apart from an exit.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `ulimit -v 4000000`, as CI containers set it: the wasm engine must run within it.
pub const ADDRESS_SPACE_LIMIT: u64 = 4_000_000 * 1024;
/// Generous for a debug build; a hang or a quadratic blow-up still fails it by far.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Largest resident set any one run may reach.
pub const RSS_LIMIT_KIB: i64 = 1 << 20;

#[derive(Debug, PartialEq)]
pub struct Run {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `meshguard args` in `dir` within the limits, its wasm compile cache in `cache` under
/// `key`; `Err` when a limit is broken or the process dies of a signal.
pub fn meshguard_keyed(
    dir: &Path,
    args: &[String],
    stdin: Option<&str>,
    cache: &Path,
    key: &str,
) -> Result<Run, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshguard"));
    command
        .args(args)
        .current_dir(dir)
        .env("MESHGUARD_CACHE_DIR", cache)
        .env("MESHGUARD_CACHE_KEY", key)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe setrlimit runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: ADDRESS_SPACE_LIMIT, rlim_max: ADDRESS_SPACE_LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut pipe, input.as_bytes());
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: wait4 on our own child with out-params we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break (status, usage);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {TIME_LIMIT:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    if libc::WIFSIGNALED(status) {
        return Err(format!("killed by signal {} (a crash); stderr: {stderr}", libc::WTERMSIG(status)));
    }
    if usage.ru_maxrss > RSS_LIMIT_KIB {
        return Err(format!("peak RSS {} KiB is over the {RSS_LIMIT_KIB} KiB bound", usage.ru_maxrss));
    }
    Ok(Run { exit: libc::WEXITSTATUS(status), stdout: String::from_utf8_lossy(&stdout).into_owned(), stderr })
}
