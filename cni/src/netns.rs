//! The container's network namespace: opening it by path, and running netlink work inside it.
//!
//! `setns(2)` changes the namespace of the calling *thread* only, so work inside the
//! container runs on a dedicated OS thread that enters the namespace, opens its own netlink
//! socket there (a socket belongs to the namespace it was created in) and drives it with its
//! own current-thread runtime. The plugin's main thread never leaves the host namespace.

use std::{
    fs::File,
    future::Future,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use nix::sched::{setns, CloneFlags};
use rtnetlink::Handle;

use crate::link::{self, LinkError};

/// `NS_GET_NSTYPE` (`_IO(0xb7, 0x3)`, Linux 4.11): which kind of namespace an nsfs fd is.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Why a network namespace cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Nothing at the path.
    #[error("network namespace {} does not exist", path.display())]
    NotFound {
        /// `CNI_NETNS`.
        path: PathBuf,
    },
    /// Something else than a network namespace at the path.
    #[error("{} is not a network namespace", path.display())]
    NotNetns {
        /// `CNI_NETNS`.
        path: PathBuf,
    },
    /// Opening failed otherwise (permissions).
    #[error("cannot open network namespace {}: {source}", path.display())]
    Open {
        /// `CNI_NETNS`.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// An open network namespace; the file keeps it alive while the plugin works in it.
#[derive(Debug)]
pub struct NetNs {
    path: PathBuf,
    file: File,
}

impl NetNs {
    /// Opens the network namespace at `path` (`/run/netns/x`, `/proc/<pid>/ns/net`) and checks
    /// that it is one.
    pub fn open(path: &Path) -> Result<NetNs, NetnsError> {
        let file = File::open(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound {
                path: path.to_path_buf(),
            },
            _ => NetnsError::Open {
                path: path.to_path_buf(),
                source,
            },
        })?;
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd's namespace type.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind != libc::CLONE_NEWNET {
            return Err(NetnsError::NotNetns {
                path: path.to_path_buf(),
            });
        }
        Ok(NetNs {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's file (for `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `work` inside this namespace with a netlink handle opened there, on a dedicated
    /// thread, and returns its result.
    pub async fn run<T, F, Fut>(&self, work: F) -> Result<T, LinkError>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, LinkError>>,
    {
        let path = self.path.display().to_string();
        let file = self
            .file
            .try_clone()
            .map_err(|e| LinkError::io(format!("duplicate the handle of netns {path}"), e))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("tortie-netns".into())
            .spawn(move || {
                let _ = sender.send(run_inside(&file, &thread_path, work));
            })
            .map_err(|e| LinkError::io(format!("start a thread for netns {path}"), e))?;
        receiver.await.map_err(|_| {
            LinkError::other(
                format!("work in netns {path}"),
                "the worker thread panicked (see the log)",
            )
        })?
    }
}

fn run_inside<T, F, Fut>(file: &File, path: &str, work: F) -> Result<T, LinkError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, LinkError>>,
{
    setns(file, CloneFlags::CLONE_NEWNET)
        .map_err(|errno| LinkError::io(format!("enter netns {path}"), io::Error::from(errno)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LinkError::io(format!("start a runtime in netns {path}"), e))?;
    runtime.block_on(async move {
        let handle = link::connect()?;
        work(handle).await
    })
}
