//! OpenSSH's sshd (Debian `openssh-server`) on 127.0.0.1 with a throwaway host key, for
//! the sftp tests; killed on drop. Logins go to a local user `rstore-sftp` (made once,
//! password below) whose home is a temporary directory of the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "rstore-sftp";
pub const PASSWORD: &str = "rstore-sftp-pw-1";

pub struct Sshd {
    pub port: u16,
    /// The server's host key line for a known_hosts file: `[127.0.0.1]:PORT ssh-ed25519 ...`.
    pub known_host: String,
    /// A directory the user owns, for the store's `base_path`.
    pub data: PathBuf,
    /// A private key the user's authorized_keys accepts.
    pub client_key: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes the login user once (with its password), as root. Tests of one binary run in
/// parallel: once per process.
fn ensure_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(make_user);
}

fn make_user() {
    let exists =
        Command::new("id").arg(USER).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !exists {
        // Exit status 9: made meanwhile by another test process.
        let st = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", USER]).status().unwrap();
        assert!(st.success() || st.code() == Some(9), "useradd {USER} failed: {st}");
    }
    let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(chpasswd.stdin.as_mut().unwrap(), format!("{USER}:{PASSWORD}\n").as_bytes()).unwrap();
    assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
}

impl Sshd {
    pub fn start() -> Self {
        ensure_user();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // sshd wants its files and the path to them owned by root and not writable by others.
        run(Command::new("chmod").arg("755").arg(d));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join("host_key")));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join("client_key")));
        let data = d.join("data");
        std::fs::create_dir(&data).unwrap();
        run(Command::new("chown").arg(format!("{USER}:{USER}")).arg(&data));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = super::free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nAllowUsers {USER}\nMaxSessions 50\nMaxStartups 50\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap(); // privilege separation directory
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd (apt-get install openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let public = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut fields = public.split_whitespace();
        let known_host = format!("[127.0.0.1]:{port} {} {}", fields.next().unwrap(), fields.next().unwrap());
        let client_key = d.join("client_key");
        Self { port, known_host, data, client_key, child, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
