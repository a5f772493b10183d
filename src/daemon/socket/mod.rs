//! The socket side of the daemon: binding the Unix socket ([`bind`]), accepting and serving
//! connections ([`listener`]), framing ([`connection`]), and what each op does ([`ops`]).

mod connection;
pub(super) mod listener;
pub mod ops;

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::config::ServerSettings;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A daemon already listens on the socket.
    #[error("another daemon is listening on {}: stop it first, or pass --socket with another path", .0.display())]
    InUse(PathBuf),
    /// The socket path is taken by something that is not a socket.
    #[error("{} exists and is not a socket; not removing it (pass --socket with another path)", .0.display())]
    NotASocket(PathBuf),
    /// A system call failed.
    #[error("{}: {action}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// `socket_group` or an `allowed_peers` entry names no group.
    #[error("group {0:?} (socket_group or allowed_peers): no such group in /etc/group")]
    NoSuchGroup(String),
    /// An `allowed_peers` entry names no user.
    #[error("user {0:?} (allowed_peers): no such user in /etc/passwd")]
    NoSuchUser(String),
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> BindError + use<> {
    let path = path.to_owned();
    move |source| BindError::Io { path, action, source }
}

/// The id of `name` in a `name:x:id:…` database (`/etc/passwd`, `/etc/group`): `name` itself when
/// it is a number.
fn id_in(database: &'static str, name: &str) -> Result<Option<u32>, BindError> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(Some(id));
    }
    let text = std::fs::read_to_string(database).map_err(io_error(Path::new(database), "read"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let entry = fields.next()?;
            let id = fields.nth(1)?.parse::<u32>().ok()?;
            (entry == name).then_some(id)
        })
        .next())
}

/// Group id of `group`: a number, or a name looked up in /etc/group.
fn group_id(group: &str) -> Result<u32, BindError> {
    id_in("/etc/group", group)?.ok_or_else(|| BindError::NoSuchGroup(group.to_owned()))
}

/// User id of `user`: a number, or a name looked up in /etc/passwd.
fn user_id(user: &str) -> Result<u32, BindError> {
    id_in("/etc/passwd", user)?.ok_or_else(|| BindError::NoSuchUser(user.to_owned()))
}

/// `[server] allowed_peers`, resolved to ids: who may use the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl PeerPolicy {
    /// The policy of `settings`; `None` when any peer may connect (no `allowed_peers`).
    fn resolve(settings: &ServerSettings) -> Result<Option<PeerPolicy>, BindError> {
        if settings.allowed_peer_users.is_empty() && settings.allowed_peer_groups.is_empty() {
            return Ok(None);
        }
        Ok(Some(PeerPolicy {
            uids: settings
                .allowed_peer_users
                .iter()
                .map(|u| user_id(u))
                .collect::<Result<_, _>>()?,
            gids: settings
                .allowed_peer_groups
                .iter()
                .map(|g| group_id(g))
                .collect::<Result<_, _>>()?,
        }))
    }

    /// The policy the accept loop applies. [`bind`] resolved it once already and refused to start
    /// on a name that is no user or group; if resolving fails now, nobody is let in.
    fn for_accepting(settings: &ServerSettings) -> Option<PeerPolicy> {
        PeerPolicy::resolve(settings).unwrap_or_else(|e| {
            tracing::error!("allowed_peers: {e}; refusing every connection");
            Some(PeerPolicy {
                uids: Vec::new(),
                gids: Vec::new(),
            })
        })
    }

    /// Whether the peer of `stream` may use the socket: its user or group is listed. A peer whose
    /// credentials cannot be read is refused. A refusal is logged (with the peer's uid, gid and pid).
    fn admits(&self, stream: &tokio::net::UnixStream) -> bool {
        match stream.peer_cred() {
            Ok(cred) if self.uids.contains(&cred.uid()) || self.gids.contains(&cred.gid()) => true,
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid(),
                    gid = cred.gid(),
                    pid = cred.pid(),
                    "closing a connection from a peer not in [server] allowed_peers"
                );
                false
            }
            Err(e) => {
                tracing::warn!("closing a connection whose peer credentials cannot be read: {e}");
                false
            }
        }
    }
}

/// A directory only this process's user can enter, created next to the socket to bind it in;
/// removed with what is left in it when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    /// Creates `<parent>/.bind.<pid>.<n>` with mode 0700. `mkdir` fails on anything that exists
    /// there (a symbolic link included), so the directory is new and ours.
    fn create(parent: &Path) -> Result<PrivateDir, BindError> {
        use std::os::unix::fs::DirBuilderExt;
        let pid = std::process::id();
        let mut n = 0u32;
        loop {
            let dir = parent.join(format!(".bind.{pid}.{n}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                // Named by the socket's directory: that is what the admin must fix.
                Err(e) => {
                    return Err(io_error(
                        parent,
                        "create a private directory there to bind the socket in",
                    )(e));
                }
            }
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Binds the socket: creates the parent directory, refuses a path a live daemon holds, removes
/// a stale socket, and puts a socket with mode `socket_mode` and group `socket_group` at the path.
/// Returns the listener and the socket's inode.
///
/// The socket is never reachable with a wider mode. Binding creates it with the process's umask
/// and it listens at once, and std cannot bind without listening nor set the umask without
/// `unsafe`. So it is bound inside a new directory of mode 0700 next to the path, given its mode and
/// group there, and only then linked into place (`link`, which never replaces an existing file;
/// `rename` where the file system has no hard links). A peer that is not the daemon's own user
/// cannot reach it before.
pub fn bind(settings: &ServerSettings) -> Result<(UnixListener, u64), BindError> {
    let path = &settings.socket;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_error(parent, "create directory"))?;
    // Names are resolved first, so that a typo stops the start before anything is created.
    let gid = settings.socket_group.as_deref().map(group_id).transpose()?;
    PeerPolicy::resolve(settings)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(path.clone())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale socket");
                std::fs::remove_file(path).map_err(io_error(path, "remove stale socket"))?;
            }
        },
        Ok(_) => return Err(BindError::NotASocket(path.clone())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, "inspect")(e)),
    }
    let private = PrivateDir::create(parent)?;
    let staged = private.0.join("s");
    let listener = UnixListener::bind(&staged).map_err(io_error(path, "bind"))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(settings.socket_mode))
        .map_err(io_error(path, "set mode"))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(&staged, None, Some(gid)).map_err(io_error(path, "change group"))?;
    }
    match std::fs::hard_link(&staged, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(BindError::InUse(path.clone())),
        Err(_) => std::fs::rename(&staged, path).map_err(io_error(path, "move the socket into place"))?,
    }
    drop(private);
    let inode = std::fs::metadata(path).map_err(io_error(path, "inspect"))?.ino();
    Ok((listener, inode))
}

/// Removes the socket if it is still the one this daemon bound.
pub fn remove(path: &Path, inode: u64) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.ino() == inode => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(socket = %path.display(), "could not remove the socket: {e}");
            }
        }
        _ => {}
    }
}
