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
    /// `socket_group` names no group.
    #[error("socket_group {0:?}: no such group in /etc/group")]
    NoSuchGroup(String),
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> BindError + use<> {
    let path = path.to_owned();
    move |source| BindError::Io { path, action, source }
}

/// Group id of `group`: a number, or a name looked up in /etc/group.
fn group_id(group: &str) -> Result<u32, BindError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").map_err(io_error(Path::new("/etc/group"), "read"))?;
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| BindError::NoSuchGroup(group.to_owned()))
}

/// Binds the socket: creates the parent directory, refuses a path a live daemon holds, removes
/// a stale socket, then sets mode and group. Returns the listener and the socket's inode.
pub fn bind(settings: &ServerSettings) -> Result<(UnixListener, u64), BindError> {
    let path = &settings.socket;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent, "create directory"))?;
    }
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
    let listener = UnixListener::bind(path).map_err(io_error(path, "bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(settings.socket_mode))
        .map_err(io_error(path, "set mode"))?;
    if let Some(group) = &settings.socket_group {
        let gid = group_id(group)?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_error(path, "change group"))?;
    }
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
