//! The install id on disk: the Python SDK's format, validation and repair, the
//! eight-process race, and the fallbacks when the file cannot be used.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use product_telemetry::identity::{IdOrigin, load_or_create, user_id_path};
use product_telemetry::{Environment, UNKNOWN_USER_ID, UserId};

fn id_path(home: &Path) -> PathBuf {
    user_id_path(
        "portia",
        &Environment::from_pairs([("HOME", home.as_os_str())]),
    )
    .unwrap()
}

#[test]
fn id_file_written_by_the_python_sdk_is_shared() {
    let home = tempfile::tempdir().unwrap();
    let path = id_path(home.path());
    assert_eq!(path, home.path().join(".portia/portia/telemetry_user_id"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Python's `str(uuid.uuid4())` written with no newline.
    let python_id = "0b6f8a52-7c7d-4d3e-9f2a-1c2b3d4e5f60";
    std::fs::write(&path, python_id).unwrap();
    let id = UserId::resolve(Some(&path));
    assert_eq!(id.as_str(), python_id);
    assert_eq!(id.origin(), &IdOrigin::Existing);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        python_id,
        "file untouched"
    );
}

#[test]
fn created_id_is_a_bare_uuid_v4_readable_by_python_with_mode_0600() {
    let home = tempfile::tempdir().unwrap();
    let path = id_path(home.path());
    let id = UserId::resolve(Some(&path));
    assert_eq!(id.origin(), &IdOrigin::Created);
    let content = std::fs::read_to_string(&path).unwrap();
    assert_eq!(content, id.as_str());
    assert!(!content.ends_with('\n'));
    assert_eq!(
        uuid::Uuid::parse_str(&content).unwrap().get_version_num(),
        4
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Memoised on disk: the next resolve reads the same id.
    assert_eq!(UserId::resolve(Some(&path)).as_str(), id.as_str());
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["telemetry_user_id"], "no temporary files left");
}

#[test]
fn whitespace_around_the_id_is_trimmed() {
    let home = tempfile::tempdir().unwrap();
    let path = id_path(home.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "  0b6f8a52-7c7d-4d3e-9f2a-1c2b3d4e5f60\n").unwrap();
    assert_eq!(
        UserId::resolve(Some(&path)).as_str(),
        "0b6f8a52-7c7d-4d3e-9f2a-1c2b3d4e5f60"
    );
}

#[test]
fn an_invalid_id_file_is_replaced() {
    for garbage in [
        &b"not-a-uuid"[..],
        b"",
        b"\xff\xfe\x00",
        &[b'a'; 100_000],
        b"00000000-0000-0000-0000-000000000000",
    ] {
        let home = tempfile::tempdir().unwrap();
        let path = id_path(home.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, garbage).unwrap();
        let id = UserId::resolve(Some(&path));
        assert_eq!(id.origin(), &IdOrigin::Repaired);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), id.as_str());
        assert_eq!(UserId::resolve(Some(&path)).as_str(), id.as_str());
    }
}

#[test]
fn a_file_where_the_folder_should_be_falls_back_to_a_per_process_id() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".portia"), "I am a file").unwrap();
    let path = id_path(home.path());
    let a = UserId::resolve(Some(&path));
    let b = UserId::resolve(Some(&path));
    assert!(matches!(a.origin(), IdOrigin::Ephemeral(_)), "{a:?}");
    assert_ne!(a.as_str(), b.as_str(), "never one shared constant");
    assert_ne!(a.as_str(), UNKNOWN_USER_ID);
    assert!(uuid::Uuid::parse_str(a.as_str()).is_ok());
}

#[test]
fn an_unwritable_cache_falls_back_to_a_per_process_id() {
    // /proc refuses new files even to root.
    let a = UserId::resolve(Some(Path::new(
        "/proc/product-telemetry-test/portia/telemetry_user_id",
    )));
    assert!(matches!(a.origin(), IdOrigin::Ephemeral(_)), "{a:?}");
    assert!(load_or_create(Path::new("/proc/product-telemetry-test/x")).is_err());
}

#[cfg(unix)]
#[test]
fn a_read_only_home_falls_back_to_a_per_process_id() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = std::fs::write(home.path().join("probe"), "x");
    if probe.is_ok() {
        // Running as root, which ignores permissions: the /proc test covers this case.
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        return;
    }
    let id = UserId::resolve(Some(&id_path(home.path())));
    assert!(matches!(id.origin(), IdOrigin::Ephemeral(_)), "{id:?}");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

const CHILD_ENV: &str = "PRODUCT_TELEMETRY_TEST_ID_CHILD";

/// Run as a child by `eight_processes_starting_together_agree_on_one_id`.
#[test]
fn id_race_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, go) = spec.split_once('|').unwrap();
    let go = Path::new(go);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !go.exists() && Instant::now() < deadline {
        std::hint::spin_loop();
    }
    let id = UserId::resolve(Some(Path::new(path)));
    println!("ID={} ORIGIN={:?}", id.as_str(), id.origin());
}

#[test]
fn eight_processes_starting_together_agree_on_one_id() {
    for round in 0..5 {
        let home = tempfile::tempdir().unwrap();
        let path = id_path(home.path());
        let go = home.path().join("go");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..8)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "id_race_child",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, format!("{}|{}", path.display(), go.display()))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&go, "").unwrap();
        let ids: Vec<String> = children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                let text = String::from_utf8(out.stdout).unwrap();
                let at = text.find("ID=").expect("the child printed its id") + "ID=".len();
                text[at..at + 36].to_string()
            })
            .collect();
        let on_disk = std::fs::read_to_string(&path).unwrap();
        for id in &ids {
            assert_eq!(id, &on_disk, "round {round}: {ids:?}");
        }
    }
}
