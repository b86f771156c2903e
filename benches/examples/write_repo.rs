//! Writes the benchmarks' 10,000-object manifest repo (`repo_files`) into a directory, for
//! measurements that run the `meshguard` binary on it (scripts/fix-vs-check.py).

fn main() {
    let Some(dir) = std::env::args().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: write_repo DIR");
        std::process::exit(2);
    };
    for (name, text) in meshguard_benches::repo_files(10_000) {
        let path = dir.join(name);
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("{}: {e}", path.display());
            std::process::exit(2);
        }
    }
}
