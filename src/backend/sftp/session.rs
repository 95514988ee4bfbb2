//! One SSH connection and its SFTP channel for the sftp backend: the host-key check by
//! policy, login, and the session's options. Part of backend/sftp.rs (the only place
//! that imports russh).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{Packet, StatusCode};

use super::classify;
use crate::backend::{BackendError, Result};
use crate::config::{HostKeyPolicy, SftpOptions};

/// One SSH connection with its SFTP channel.
pub(super) struct Conn {
    pub(super) sftp: RawSftpSession,
    pub(super) posix_rename: bool,
    _ssh: client::Handle<Client>,
}

/// The SSH client's host-key check, by the configured policy.
struct Client {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    known: Option<PathBuf>,
    /// Where tofu records a new key (`None` for inline keys: never written back).
    learn: Option<PathBuf>,
    /// Why a key was refused, for the error line.
    refused: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(self.policy == HostKeyPolicy::Auto);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        if self.policy == HostKeyPolicy::Auto {
            tracing::warn!(host = %self.host, %fingerprint, "host_key_policy = auto: any host key is accepted");
            return Ok(true);
        }
        let known = match &self.known {
            Some(p) if p.exists() => russh::keys::check_known_hosts_path(&self.host, self.port, key, p),
            _ => Ok(false),
        };
        let why = match known {
            Ok(true) => return Ok(true),
            Err(russh::keys::Error::KeyChanged { line }) => {
                format!("the host key of {}:{} changed ({fingerprint}; line {line} of the known keys has another)", self.host, self.port)
            }
            _ if self.policy == HostKeyPolicy::Tofu => {
                if let Some(p) = &self.learn {
                    if let Err(e) = russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, p) {
                        tracing::warn!(path = %p.display(), "cannot record the host key: {e}");
                    }
                }
                tracing::info!(host = %self.host, %fingerprint, "host key trusted on first use");
                return Ok(true);
            }
            _ => format!(
                "the host key of {}:{} is not known ({fingerprint}); add it to known_hosts or known_host_keys, or set host_key_policy",
                self.host, self.port
            ),
        };
        *self.refused.lock().expect("poisoned") = Some(why);
        Ok(false)
    }
}

/// The local user's name (paramiko's default user name).
fn local_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        // SAFETY: getpwuid returns a pointer into static storage or null; read at once.
        unsafe {
            let pw = libc::getpwuid(libc::getuid());
            if pw.is_null() {
                return "root".into();
            }
            std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
        }
    })
}

pub(super) async fn connect(o: &SftpOptions, known: Option<PathBuf>, learn: Option<PathBuf>) -> Result<Conn> {
    let refused = Arc::new(Mutex::new(None));
    let handler = Client {
        host: o.host.clone(),
        port: o.port,
        policy: o.host_key_policy,
        known,
        learn,
        refused: refused.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        // Large windows: a 1 GiB transfer must not wait on window adjustments.
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        // AES-GCM first: with the CPU's AES instructions it costs less per byte than
        // ChaCha20-Poly1305 (russh's first choice), and the cipher is what bounds a
        // transfer on loopback.
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_256_GCM,
                russh::cipher::AES_128_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
                russh::cipher::AES_128_CTR,
            ]),
            ..Default::default()
        },
        ..Default::default()
    });
    let deadline = Duration::from_secs_f64(o.timeout);
    let addr = (o.host.clone(), o.port);
    let connect = tokio::time::timeout(deadline, client::connect(config, addr, handler)).await;
    let mut ssh = match connect {
        Err(_) => {
            return Err(BackendError::Transient(format!(
                "no SSH answer from {}:{} within {:?}",
                o.host, o.port, deadline
            )))
        }
        Ok(Err(e)) => {
            return Err(match refused.lock().expect("poisoned").take() {
                Some(why) => BackendError::AccessDenied(why),
                None => BackendError::Transient(format!("cannot connect to {}:{}: {e}", o.host, o.port)),
            })
        }
        Ok(Ok(h)) => h,
    };
    let user = o.username.clone().unwrap_or_else(local_user);
    if !tokio::time::timeout(deadline, authenticate(o, &mut ssh, &user))
        .await
        .map_err(|_| BackendError::Transient("SSH authentication timed out".into()))??
    {
        let how = if o.password.is_some() { "password" } else { "keys from ssh-agent and ~/.ssh" };
        return Err(BackendError::AccessDenied(format!("SSH authentication as '{user}' failed ({how})")));
    }
    let ssh_err = |e: russh::Error| BackendError::Transient(format!("SSH: {e}"));
    let channel = ssh.channel_open_session().await.map_err(ssh_err)?;
    channel.request_subsystem(true, "sftp").await.map_err(ssh_err)?;
    let sftp = RawSftpSession::new(channel.into_stream());
    if let Some(t) = o.io_timeout {
        sftp.set_timeout(t.ceil() as u64);
    }
    let version = sftp.init().await.map_err(classify)?;
    let posix_rename = version.extensions.contains_key("posix-rename@openssh.com");
    Ok(Conn { sftp, posix_rename, _ssh: ssh })
}

/// Password if configured; else each key of ssh-agent, then the key files. Returns
/// whether the server accepted one.
async fn authenticate(o: &SftpOptions, ssh: &mut client::Handle<Client>, user: &str) -> Result<bool> {
    let ssh_err = |e: russh::Error| BackendError::Transient(format!("SSH: {e}"));
    if let Some(pw) = &o.password {
        return Ok(ssh.authenticate_password(user, pw.expose()).await.map_err(ssh_err)?.success());
    }
    let rsa_hash = ssh.best_supported_rsa_hash().await.ok().flatten().flatten();
    if o.allow_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
            let ids = agent.request_identities().await.unwrap_or_default();
            for id in ids {
                let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else { continue };
                let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
                if let Ok(r) = ssh.authenticate_publickey_with(user, key, hash, &mut agent).await {
                    if r.success() {
                        return Ok(true);
                    }
                }
            }
        }
    }
    let mut files = o.key_files.clone();
    if o.look_for_keys {
        if let Some(home) = std::env::var_os("HOME") {
            let ssh_dir = PathBuf::from(home).join(".ssh");
            files.extend(["id_ed25519", "id_ecdsa", "id_rsa"].map(|n| ssh_dir.join(n)));
        }
    }
    for f in files.iter().filter(|f| f.exists()) {
        let Ok(key) = russh::keys::load_secret_key(f, None) else {
            tracing::debug!(file = %f.display(), "key not usable (encrypted or unreadable)");
            continue;
        };
        let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
        let r =
            ssh.authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash)).await.map_err(ssh_err)?;
        if r.success() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// OpenSSH's atomic rename that replaces an existing target.
pub(super) async fn posix_rename(c: &Conn, from: &str, to: &str) -> std::result::Result<(), SftpError> {
    let mut data = Vec::with_capacity(8 + from.len() + to.len());
    for s in [from, to] {
        data.extend_from_slice(&(s.len() as u32).to_be_bytes());
        data.extend_from_slice(s.as_bytes());
    }
    match c.sftp.extended("posix-rename@openssh.com", data).await? {
        Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(s) => Err(SftpError::Status(s)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}
