//! `plantd backup import` of zips made to hurt the plant: psql commands hidden where a line
//! filter does not look, a reconnection to the live database, a `search_path` trick on
//! plantd's own queries, a zip bomb and a zip that lies about its sizes. Each is refused (or
//! made harmless) and afterwards no file exists in the live postgres container, no sandbox
//! container is left, and the live cluster (databases, roles, the Odoo database's tables) is
//! as it was.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::stack::{docker, docker_ok, TestStack};

/// A zip of `(name, data)` entries, deflated.
fn write_zip(path: &std::path::Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        std::io::Write::write_all(&mut zip, data).unwrap();
    }
    zip.finish().unwrap();
}

/// What a user would look at in the live cluster: databases, roles, and the Odoo database's
/// tables and functions.
fn live_state(stack: &TestStack) -> String {
    let dbs = stack.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database");
    let roles = stack.psql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles");
    let objects = docker_ok(&[
        "exec",
        &stack.container("postgres"),
        "psql",
        "-U",
        "odoo",
        "-d",
        "odoo",
        "-tAc",
        "SELECT string_agg(n, ',' ORDER BY n) FROM (SELECT relname::text AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace UNION ALL SELECT proname::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace) x",
    ]);
    format!("databases: {dbs}\nroles: {roles}\nodoo: {objects}")
}

/// Files named pwned* anywhere a shell in the postgres container would have put them.
fn pwned_files(stack: &TestStack) -> String {
    let out = docker(&[
        "exec",
        &stack.container("postgres"),
        "sh",
        "-c",
        "find / -xdev -name 'pwned*' 2>/dev/null; true",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Containers an import left (a sandbox is labelled `io.plantd.import=STACK`).
fn sandboxes(stack: &TestStack) -> String {
    let label = format!("label=io.plantd.import={}", stack.name);
    let named = format!("name={}-postgres-import", stack.name);
    let a = docker_ok(&["ps", "-aq", "--filter", &label]);
    let b = docker_ok(&["ps", "-aq", "--filter", &named]);
    format!("{a}{b}")
}

fn backups(stack: &TestStack) -> Vec<String> {
    let dir = stack.plant.data_dir.join("backups");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn hostile_dumps_are_refused_and_leave_the_plant_as_it_was() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let dir = tempfile::tempdir().unwrap();
    let before = live_state(&stack);
    assert_eq!(pwned_files(&stack), "");

    // (name, dump.sql, what the refusal must say)
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "mid-line shell",
            "CREATE TABLE t (a int);\nSELECT 1; \\! touch /tmp/pwned_midline\n",
            &["dump.sql, line 2", "`\\! touch /tmp/pwned_midline`", "psql command"],
        ),
        (
            "indented shell",
            "CREATE TABLE t (a int);\n   \\! touch /tmp/pwned_indented\n",
            &["dump.sql, line 2", "psql command"],
        ),
        (
            "COPY lookalike in a string",
            "CREATE TABLE t (a text);\nINSERT INTO t VALUES ('\nCOPY t (a) FROM stdin;\n');\n\\! touch /tmp/pwned_copy\n",
            &["dump.sql, line 5", "psql command"],
        ),
        (
            "mid-line reconnect",
            "CREATE TABLE t (a int); \\c odoo odoo\nCREATE TABLE pwned_reconnect (a int);\n",
            &["dump.sql, line 1", "`\\c odoo odoo`", "psql command"],
        ),
        (
            "shell after a COPY whose data holds a lookalike",
            "CREATE TABLE t (a text);\nCOPY t (a) FROM stdin;\n\\\\! not a command in data\n\\.\nSELECT 2; \\! touch /tmp/pwned_after_copy\n",
            &["dump.sql, line 5", "psql command"],
        ),
        (
            // Read with standard_conforming_strings off, '\'' is one string and the shell
            // escape stands outside it: plantd's reader does not read it so, psql's own
            // \restrict refuses it.
            "standard_conforming_strings off",
            "SET standard_conforming_strings = off;\nSELECT '\\'' ; \\! touch /tmp/pwned_scs\n';\n",
            &["backslash commands are restricted", "dump.sql, line 2"],
        ),
    ];
    for (what, sql, wants) in cases {
        let zip = dir.path().join("hostile.zip");
        write_zip(&zip, &[("dump.sql", sql.as_bytes())]);
        let out = stack.cli(&["backup", "import", zip.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: import succeeded");
        for want in wants.iter().chain(&["nothing was made"]) {
            assert!(err.contains(want), "{what}: {err:?} should say {want:?}");
        }
        assert_eq!(pwned_files(&stack), "", "{what}: a shell ran");
        assert_eq!(sandboxes(&stack), "", "{what}: a sandbox was left");
        assert_eq!(
            live_state(&stack),
            before,
            "{what}: the live cluster changed"
        );
        assert!(backups(&stack).is_empty(), "{what}: {:?}", backups(&stack));
        println!("{what}: refused: {}", err.trim());
    }
}

#[test]
fn a_search_path_trick_never_runs_as_a_superuser() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let before = live_state(&stack);
    // The database's search_path puts public first, where its own xpath(text, xml) waits
    // for plantd's row count; as a superuser it would run a program in the postgres
    // container.
    let sql = "CREATE TABLE public.t (a int);\nINSERT INTO public.t VALUES (1), (2);\n\
        CREATE FUNCTION public.xpath(text, xml) RETURNS xml[] LANGUAGE plpgsql AS $f$\n\
        BEGIN\n  COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned_xpath';\n  RETURN pg_catalog.xpath($1, $2);\nEND $f$;\n\
        DO $d$ BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = public, pg_catalog', pg_catalog.current_database()); END $d$;\n";
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("xpath.zip");
    write_zip(&zip, &[("dump.sql", sql.as_bytes())]);
    let out = stack.cli(&["backup", "import", zip.to_str().unwrap(), "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(pwned_files(&stack), "", "a program ran: {err}");
    assert_eq!(sandboxes(&stack), "");
    assert_eq!(live_state(&stack), before);
    // The trick is harmless: the import counts with PostgreSQL's own xpath, and so does a
    // verify, which restores the backup into the live cluster as a superuser.
    assert!(out.status.success(), "{err}");
    let imported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = imported["id"].as_str().unwrap();
    let said = stack.cli_ok(&["backup", "verify", id]);
    assert!(said.contains("verified"), "{said}");
    assert_eq!(pwned_files(&stack), "", "verify ran the dump's xpath");
    assert_eq!(live_state(&stack), before);
}

/// A small tmpfs mounted over a directory, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn used_bytes(path: &std::path::Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_zip_bomb_is_refused_before_it_writes() {
    let stack =
        TestStack::start("[backup]\nschedule = \"off\"\n[journal]\nmin_free_space = \"1MiB\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let backups_dir = stack.plant.data_dir.join("backups");
    std::fs::create_dir_all(&backups_dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&backups_dir)
        .output()
        .unwrap();
    assert!(
        mounted.status.success(),
        "this test mounts a tmpfs and needs root"
    );
    let _disk = SmallDisk(backups_dir.clone());
    // 256 MiB of SQL comment in a zip of a few hundred KiB.
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("bomb.zip");
    let mut sql = Vec::with_capacity(256 << 20);
    let line = [b"-- ".as_slice(), &[b'x'; 1020], b"\n"].concat();
    while sql.len() < 256 << 20 {
        sql.extend_from_slice(&line);
    }
    write_zip(&zip, &[("dump.sql", &sql)]);
    drop(sql);
    let zip_size = std::fs::metadata(&zip).unwrap().len();
    assert!(zip_size < 2 << 20, "{zip_size}");
    let data_before = used_bytes(&stack.plant.data_dir);
    let out = stack.cli(&["backup", "import", zip.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not enough free space to import it")
            && err.contains("256.0 MiB of SQL")
            && err.contains("nothing was made"),
        "{err}"
    );
    assert!(backups(&stack).is_empty(), "{:?}", backups(&stack));
    assert_eq!(sandboxes(&stack), "", "no sandbox was even started");
    let data_after = used_bytes(&stack.plant.data_dir);
    assert!(
        data_after < data_before + (1 << 20),
        "the data directory grew from {data_before} to {data_after} bytes"
    );
    println!(
        "a {zip_size}-byte zip declaring 256 MiB: refused: {}",
        err.trim()
    );
}

/// Sets the uncompressed size the zip declares for `name` (local header and central
/// directory) to `size`.
fn forge_size(zip: &std::path::Path, name: &str, size: u32) {
    let mut bytes = std::fs::read(zip).unwrap();
    let mut at = 0;
    let mut patched = 0;
    while let Some(p) = bytes[at..]
        .windows(name.len())
        .position(|w| w == name.as_bytes())
    {
        let p = at + p;
        let local = p >= 30 && bytes[p - 30..p - 26] == [0x50, 0x4b, 0x03, 0x04];
        let central = p >= 46 && bytes[p - 46..p - 42] == [0x50, 0x4b, 0x01, 0x02];
        let field = if local {
            Some(p - 30 + 22)
        } else if central {
            Some(p - 46 + 24)
        } else {
            None
        };
        if let Some(f) = field {
            bytes[f..f + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
        at = p + name.len();
    }
    assert_eq!(patched, 2, "{name}: local header and central directory");
    std::fs::write(zip, bytes).unwrap();
}

#[test]
fn a_zip_whose_entry_is_bigger_than_declared_is_refused() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'a'; 64 << 10];
    for entry in ["filestore/ab/abcdef", "dump.sql"] {
        let zip = dir.path().join("liar.zip");
        let mut sql = b"CREATE TABLE t (a int);\n".to_vec();
        if entry == "dump.sql" {
            sql.extend(std::iter::repeat_n(b"-- padding\n".as_slice(), 6000).flatten());
        }
        write_zip(&zip, &[("dump.sql", &sql), ("filestore/ab/abcdef", &big)]);
        forge_size(&zip, entry, 100);
        let out = stack.cli(&["backup", "import", zip.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{entry}");
        // plantd's reader or the zip crate's own limit, whichever meets it first, names the
        // entry and its declared size.
        assert!(
            err.contains(entry) && err.contains("declared") && err.contains("nothing was made"),
            "{entry}: {err}"
        );
        assert!(backups(&stack).is_empty(), "{:?}", backups(&stack));
        assert_eq!(sandboxes(&stack), "");
    }
}

#[test]
fn an_odoo_zip_imports_in_the_sandbox_and_prints_its_time() {
    let stack = TestStack::start("[backup]\nschedule = \"off\"\n");
    stack.wait_all_healthy(Duration::from_secs(120));
    let id = stack.cli_ok(&["backup", "run"]);
    let id = id.lines().last().unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("plant.zip");
    stack.cli_ok(&["backup", "export", &id, "--odoo-zip", zip.to_str().unwrap()]);
    let before = live_state(&stack);
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        stack.cli_ok(&["backup", "import", zip.to_str().unwrap()]);
        times.push(started.elapsed().as_secs_f64());
    }
    println!(
        "import of a {} KiB exported zip: {:.2?} s",
        std::fs::metadata(&zip).unwrap().len() / 1024,
        times
    );
    assert_eq!(sandboxes(&stack), "");
    assert_eq!(live_state(&stack), before);
}
