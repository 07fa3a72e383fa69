//! Opening the maps tortie-agent pinned on this node, with errors that say what to do.
//!
//! Maps live at `<pin root>/maps/v<MAP_LAYOUT_VERSION>/<NAME>` (see [`bpf_maps::pins`]). The
//! handles opened here are new file descriptors on the same kernel maps the programs use.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Map, MapData, MapError},
    sys::SyscallError,
};
use bpf_maps::{
    pins::{self, maps_dir},
    MAP_LAYOUT_VERSION,
};

const HINT: &str = "is tortie-agent running on this node? pass --pin-root or set TORTIE_PIN_ROOT";

/// Why the dataplane's maps could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The pin root does not exist.
    #[error("pin root {} does not exist: {HINT}", .path.display())]
    PinRootMissing {
        /// The pin root.
        path: PathBuf,
    },
    /// The pin root holds no maps of this tortiectl's layout.
    #[error("{}", layout_missing_message(.maps_dir, .other_layouts, .pin_roots_below))]
    LayoutMissing {
        /// Where the maps were expected.
        maps_dir: PathBuf,
        /// Other layout versions pinned next to it (`v2`, ...).
        other_layouts: Vec<String>,
        /// Pin roots found below the given one (the lab uses `<root>/<lab>/<node>`).
        pin_roots_below: Vec<PathBuf>,
    },
    /// One map is not pinned.
    #[error("map {name} is not pinned at {}: {HINT}", .path.display())]
    MapMissing {
        /// The map.
        name: &'static str,
        /// Its pin path.
        path: PathBuf,
    },
    /// The caller may not open pinned maps.
    #[error(
        "permission denied opening {}: tortiectl bpf must run as root (opening pinned BPF maps \
         needs CAP_BPF and CAP_SYS_ADMIN); try sudo",
        .path.display()
    )]
    NotRoot {
        /// What could not be opened.
        path: PathBuf,
    },
    /// Any other failure opening a pin.
    #[error("cannot open map {name} at {}", .path.display())]
    Open {
        /// The map.
        name: &'static str,
        /// Its pin path.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: Box<MapError>,
    },
    /// The pinned map's type or sizes are not what this tortiectl expects.
    #[error(
        "map {name} at {} is not the {expected} of map layout v{MAP_LAYOUT_VERSION} this \
         tortiectl reads; use the tortiectl built with the running agent",
        .path.display()
    )]
    Layout {
        /// The map.
        name: &'static str,
        /// Its pin path.
        path: PathBuf,
        /// The map type expected (`LRU hash`, `LPM trie`, ...).
        expected: &'static str,
        /// What did not match.
        #[source]
        source: Box<MapError>,
    },
    /// Reading or deleting entries failed.
    #[error("{action} map {name}")]
    Access {
        /// `reading`, `deleting from`.
        action: &'static str,
        /// The map.
        name: &'static str,
        /// The kernel's answer.
        #[source]
        source: Box<MapError>,
    },
}

fn layout_missing_message(maps_dir: &Path, others: &[String], below: &[PathBuf]) -> String {
    let mut message = format!(
        "no tortie maps of layout v{MAP_LAYOUT_VERSION} at {}",
        maps_dir.display()
    );
    if !others.is_empty() {
        message.push_str(&format!(
            " (found layout {}: the agent on this node is a different version than this \
             tortiectl; use the matching tortiectl)",
            others.join(", ")
        ));
    } else if !below.is_empty() {
        let roots: Vec<String> = below.iter().map(|p| p.display().to_string()).collect();
        message.push_str(&format!(
            "; pin roots found below it: {} — pass one with --pin-root",
            roots.join(", ")
        ));
    } else {
        message.push_str(&format!(": {HINT}"));
    }
    message
}

/// An open pinned map and what the kernel says about it.
pub struct OpenedMap {
    /// The map, ready for `HashMap::try_from` and friends.
    pub map: Map,
    /// Its capacity.
    pub max_entries: u32,
    /// Its pin path (for messages).
    pub path: PathBuf,
}

/// The directory of pinned maps of one node.
#[derive(Clone, Debug)]
pub struct PinnedMaps {
    maps_dir: PathBuf,
}

impl PinnedMaps {
    /// Checks that `pin_root` holds maps of this tortiectl's layout.
    pub fn locate(pin_root: &Path) -> Result<Self, BpfError> {
        check_exists(pin_root).map_err(|missing| match missing {
            Missing::NotFound => BpfError::PinRootMissing {
                path: pin_root.to_path_buf(),
            },
            Missing::Denied => BpfError::NotRoot {
                path: pin_root.to_path_buf(),
            },
        })?;
        let maps_dir = maps_dir(pin_root);
        match check_exists(&maps_dir) {
            Ok(()) => Ok(Self { maps_dir }),
            Err(Missing::Denied) => Err(BpfError::NotRoot { path: maps_dir }),
            Err(Missing::NotFound) => Err(BpfError::LayoutMissing {
                other_layouts: other_layouts(pin_root),
                pin_roots_below: pin_roots_below(pin_root),
                maps_dir,
            }),
        }
    }

    /// Opens the map pinned as `name`.
    pub fn open(&self, name: &'static str) -> Result<OpenedMap, BpfError> {
        let path = self.maps_dir.join(name);
        let data = MapData::from_pin(&path).map_err(|source| match errno_kind(&source) {
            Some(io::ErrorKind::NotFound) => BpfError::MapMissing {
                name,
                path: path.clone(),
            },
            Some(io::ErrorKind::PermissionDenied) => BpfError::NotRoot { path: path.clone() },
            _ => BpfError::Open {
                name,
                path: path.clone(),
                source: Box::new(source),
            },
        })?;
        let max_entries = data
            .info()
            .map_err(|source| BpfError::Open {
                name,
                path: path.clone(),
                source: Box::new(source),
            })?
            .max_entries();
        let map = Map::from_map_data(data).map_err(|source| BpfError::Open {
            name,
            path: path.clone(),
            source: Box::new(source),
        })?;
        Ok(OpenedMap {
            map,
            max_entries,
            path,
        })
    }

    /// Opens `name` and converts it to a typed map; `expected` names the map type for errors.
    pub fn open_typed<M>(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<(M, u32), BpfError>
    where
        M: TryFrom<Map, Error = MapError>,
    {
        let opened = self.open(name)?;
        let typed = M::try_from(opened.map).map_err(|source| BpfError::Layout {
            name,
            path: opened.path,
            expected,
            source: Box::new(source),
        })?;
        Ok((typed, opened.max_entries))
    }
}

/// Wraps a read error of map `name`.
pub fn read_error(name: &'static str) -> impl Fn(MapError) -> BpfError {
    move |source| BpfError::Access {
        action: "reading",
        name,
        source: Box::new(source),
    }
}

enum Missing {
    NotFound,
    Denied,
}

fn check_exists(path: &Path) -> Result<(), Missing> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => Err(Missing::Denied),
        Err(_) => Err(Missing::NotFound),
    }
}

fn errno_kind(error: &MapError) -> Option<io::ErrorKind> {
    match error {
        MapError::SyscallError(SyscallError { io_error, .. }) => Some(io_error.kind()),
        _ => None,
    }
}

/// `v*` directories next to the expected one.
fn other_layouts(pin_root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(pin_root.join(pins::MAPS_DIR)) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with('v'))
        .collect();
    found.sort();
    found
}

/// Directories up to two levels below `pin_root` that hold maps of this layout.
fn pin_roots_below(pin_root: &Path) -> Vec<PathBuf> {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok())
                    .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|entry| entry.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found: Vec<PathBuf> = subdirs(pin_root)
        .into_iter()
        .flat_map(|dir| {
            let mut candidates = subdirs(&dir);
            candidates.push(dir);
            candidates
        })
        .filter(|dir| maps_dir(dir).is_dir())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_root_names_the_path_and_the_fix() {
        let error = PinnedMaps::locate(Path::new("/nonexistent/tortie/lab/node-9")).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent/tortie/lab/node-9"),
            "{message}"
        );
        assert!(message.contains("--pin-root"), "{message}");
        assert!(message.contains("TORTIE_PIN_ROOT"), "{message}");
    }

    #[test]
    fn an_empty_root_points_at_roots_below_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let node = root.path().join("lab").join("node-0");
        std::fs::create_dir_all(maps_dir(&node)).expect("mkdir");
        let message = PinnedMaps::locate(root.path()).unwrap_err().to_string();
        assert!(message.contains(&node.display().to_string()), "{message}");
        assert!(PinnedMaps::locate(&node).is_ok());
    }

    #[test]
    fn another_layout_version_is_named() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("maps").join("v1")).expect("mkdir");
        let message = PinnedMaps::locate(root.path()).unwrap_err().to_string();
        assert!(message.contains("found layout v1"), "{message}");
    }
}
