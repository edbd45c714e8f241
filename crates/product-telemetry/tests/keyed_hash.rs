//! The keyed hash: its exact output, the secret file on disk (creation, permissions,
//! races, repair) and the per-process fallback.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use product_telemetry::keyed_hash::{KeyedHasher, SECRET_FILE_NAME, SecretOrigin, secret_path};
use product_telemetry::scrub::Scrubber;

fn counting_secret() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

#[test]
fn hash_is_hmac_sha256_truncated_to_twelve_bytes() {
    // Expected values from Python: hmac.new(bytes(range(32)), value, sha256).hexdigest()[:24]
    let hasher = KeyedHasher::from_secret(counting_secret());
    assert_eq!(
        hasher.hash("https://github.com/ada/secret-project"),
        "h:c3d1896befe9780a4da688b5"
    );
    assert_eq!(hasher.hash(""), "h:d38b42096d80f45f826b44a9");
    assert_eq!(hasher.origin(), &SecretOrigin::Given);
    assert!(!hasher.is_persistent());
}

#[test]
fn same_input_same_output_within_one_secret() {
    let hasher = KeyedHasher::from_secret([42; 32]);
    let clone = hasher.clone();
    assert_eq!(hasher.hash("project-x"), hasher.hash("project-x"));
    assert_eq!(hasher.hash("project-x"), clone.hash("project-x"));
    assert_ne!(hasher.hash("project-x"), hasher.hash("project-y"));
    assert_ne!(hasher.hash("project-x"), hasher.hash("Project-x"));
}

#[test]
fn different_secrets_give_different_hashes() {
    let a = KeyedHasher::from_secret([1; 32]);
    let b = KeyedHasher::from_secret([2; 32]);
    assert_ne!(a.hash("project-x"), b.hash("project-x"));
}

#[test]
fn hashes_pass_the_scrubber_unchanged() {
    let scrubber = Scrubber::new(None, None);
    let hasher = KeyedHasher::from_secret(counting_secret());
    for value in ["a", "ada@example.com", "/home/ada", "10.0.0.1"] {
        let hash = hasher.hash(value);
        assert_eq!(scrubber.scrub_str(&hash), hash);
    }
}

#[test]
fn debug_does_not_show_the_secret() {
    let text = format!("{:?}", KeyedHasher::from_secret([0xab; 32]));
    assert!(
        !text.contains("171") && !text.to_lowercase().contains("abab"),
        "{text}"
    );
}

#[test]
fn created_secret_file_holds_32_private_bytes_and_is_reused() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("app");
    let first = KeyedHasher::load_or_create(&dir);
    assert_eq!(first.origin(), &SecretOrigin::Created);
    assert!(first.is_persistent());
    let path = secret_path(&dir);
    assert_eq!(path, dir.join(SECRET_FILE_NAME));
    let content = std::fs::read(&path).unwrap();
    assert_eq!(content.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [SECRET_FILE_NAME]);

    let second = KeyedHasher::load_or_create(&dir);
    assert_eq!(second.origin(), &SecretOrigin::Existing);
    assert_eq!(first.hash("project-x"), second.hash("project-x"));
    let secret: [u8; 32] = content.try_into().unwrap();
    assert_eq!(
        KeyedHasher::from_secret(secret).hash("project-x"),
        first.hash("project-x")
    );
}

#[test]
fn corrupt_secret_is_replaced() {
    for corrupt in [&b"short"[..], &[0u8; 32][..], &[7u8; 33][..], &b""[..]] {
        let home = tempfile::tempdir().unwrap();
        let path = secret_path(home.path());
        std::fs::write(&path, corrupt).unwrap();
        let hasher = KeyedHasher::load_or_create(home.path());
        assert_eq!(hasher.origin(), &SecretOrigin::Repaired, "{corrupt:?}");
        let content = std::fs::read(&path).unwrap();
        assert_eq!(content.len(), 32);
        assert_ne!(content, [0u8; 32]);
        let again = KeyedHasher::load_or_create(home.path());
        assert_eq!(again.origin(), &SecretOrigin::Existing);
        assert_eq!(again.hash("x"), hasher.hash("x"));
    }
}

#[test]
fn unusable_folder_falls_back_to_a_per_process_secret() {
    let home = tempfile::tempdir().unwrap();
    // A file where the folder should be.
    let not_a_dir = home.path().join("blocker");
    std::fs::write(&not_a_dir, "x").unwrap();
    let a = KeyedHasher::load_or_create(&not_a_dir.join("app"));
    let b = KeyedHasher::load_or_create(&not_a_dir.join("app"));
    assert!(matches!(a.origin(), SecretOrigin::Ephemeral(_)), "{a:?}");
    assert!(!a.is_persistent());
    assert_eq!(a.hash("x"), a.hash("x"));
    assert_ne!(a.hash("x"), b.hash("x"), "each fallback has its own secret");
}

#[cfg(unix)]
#[test]
fn read_only_folder_falls_back_to_a_per_process_secret() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(home.path().join("probe"), "").is_ok() {
        // Running as root: permissions do not apply.
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        return;
    }
    let hasher = KeyedHasher::load_or_create(home.path());
    assert!(
        matches!(hasher.origin(), SecretOrigin::Ephemeral(_)),
        "{hasher:?}"
    );
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn threads_creating_the_secret_together_agree() {
    for _ in 0..10 {
        let home = tempfile::tempdir().unwrap();
        let dir = Arc::new(home.path().join("app"));
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let dir = Arc::clone(&dir);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    KeyedHasher::load_or_create(&dir)
                })
            })
            .collect();
        let hashers: Vec<KeyedHasher> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let created = hashers
            .iter()
            .filter(|h| h.origin() == &SecretOrigin::Created)
            .count();
        assert_eq!(created, 1, "{hashers:?}");
        let expected = hashers[0].hash("project-x");
        assert!(hashers.iter().all(|h| h.hash("project-x") == expected));
    }
}

const CHILD_ENV: &str = "PRODUCT_TELEMETRY_TEST_SECRET_CHILD";

/// Run as a child by `processes_creating_the_secret_together_agree`.
#[test]
fn secret_race_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, go) = spec.split_once('|').unwrap();
    let go = Path::new(go);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !go.exists() && Instant::now() < deadline {
        std::hint::spin_loop();
    }
    let hasher = KeyedHasher::load_or_create(Path::new(dir));
    println!(
        "HASH={} ORIGIN={:?}",
        hasher.hash("project-x"),
        hasher.origin()
    );
}

#[test]
fn processes_creating_the_secret_together_agree() {
    for round in 0..3 {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("app");
        let go = home.path().join("go");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..6)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "secret_race_child",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, format!("{}|{}", dir.display(), go.display()))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&go, "").unwrap();
        let hashes: Vec<String> = children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                let text = String::from_utf8(out.stdout).unwrap();
                let at = text.find("HASH=").expect("the child printed its hash") + "HASH=".len();
                text[at..at + 26].to_string()
            })
            .collect();
        let secret: [u8; 32] = std::fs::read(secret_path(&dir))
            .unwrap()
            .try_into()
            .unwrap();
        let on_disk = KeyedHasher::from_secret(secret).hash("project-x");
        for hash in &hashes {
            assert_eq!(hash, &on_disk, "round {round}: {hashes:?}");
        }
    }
}
