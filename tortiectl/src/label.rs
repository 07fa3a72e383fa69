//! `tortiectl label`: add, change or remove labels of a stored resource, as calicoctl's
//! `label` command does.
//!
//! Labelling a Kubernetes pod record also relabels that pod's workload endpoints: in the etcd
//! datastore nothing else derives endpoint labels from pods after the CNI ADD, and policy
//! selects endpoints by those labels. Calico's own labels (`projectcalico.org/…`) stay.

use std::collections::BTreeMap;

use tortie_resources::{Kind, Resource};

use crate::{ResourceStore, StoreError};

/// Prefix of the labels Calico sets on endpoints itself; a pod's labels never override them.
const CALICO_LABEL_PREFIX: &str = "projectcalico.org/";

/// One requested change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelChange {
    /// `key=value`.
    Set(String, String),
    /// `key-` (or `key` with `--remove`).
    Remove(String),
}

impl LabelChange {
    /// Parses `key=value` or `key-`; `remove` turns a bare `key` into a removal.
    pub fn parse(arg: &str, remove: bool) -> Result<Self, String> {
        if let Some((key, value)) = arg.split_once('=') {
            if remove {
                return Err(format!(
                    "{arg:?}: --remove takes label keys only, not key=value"
                ));
            }
            if key.is_empty() {
                return Err(format!("{arg:?}: the label key is empty"));
            }
            return Ok(Self::Set(key.to_owned(), value.to_owned()));
        }
        match arg.strip_suffix('-') {
            Some(key) if !key.is_empty() => Ok(Self::Remove(key.to_owned())),
            _ if remove && !arg.is_empty() => Ok(Self::Remove(arg.to_owned())),
            _ => Err(format!(
                "{arg:?}: give key=value to set a label, key- (or --remove key) to remove one"
            )),
        }
    }
}

/// What [`label`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relabelled {
    /// The resources written, described (`Pod x/a`, `WorkloadEndpoint x/…`).
    pub written: Vec<String>,
    /// True when the labels already were as asked and nothing was written.
    pub unchanged: bool,
}

/// Applies `changes` to `labels`. Changing an existing value needs `overwrite`, like
/// calicoctl and kubectl; removing a missing key is an error, so that a typo is noticed.
pub fn apply_changes(
    labels: &mut BTreeMap<String, String>,
    changes: &[LabelChange],
    overwrite: bool,
    what: &str,
) -> Result<(), String> {
    for change in changes {
        match change {
            LabelChange::Set(key, value) => match labels.get(key) {
                Some(old) if old != value && !overwrite => {
                    return Err(format!(
                        "{what} already has label {key}={old}; add --overwrite to change it"
                    ))
                }
                _ => {
                    labels.insert(key.clone(), value.clone());
                }
            },
            LabelChange::Remove(key) => {
                if labels.remove(key).is_none() {
                    return Err(format!("{what} has no label {key}"));
                }
            }
        }
    }
    Ok(())
}

/// Relabels `kind namespace/name` (and, for a pod record, its workload endpoints). The
/// result is validated before anything is written; writes are compare-and-swap on the
/// revision just read, retried when someone else wrote in between.
pub async fn label(
    store: &ResourceStore,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    changes: &[LabelChange],
    overwrite: bool,
) -> anyhow::Result<Relabelled> {
    for _ in 0..8 {
        match try_label(store, kind, namespace, name, changes, overwrite).await {
            Err(LabelError::Store(StoreError::Conflict(_))) => continue,
            Err(LabelError::Store(err)) => return Err(err.into()),
            Err(LabelError::Rejected(reason)) => anyhow::bail!(reason),
            Ok(done) => return Ok(done),
        }
    }
    anyhow::bail!(
        "{} {name} kept changing while being relabelled; try again",
        kind.name()
    )
}

enum LabelError {
    Store(StoreError),
    Rejected(String),
}

impl From<StoreError> for LabelError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

async fn try_label(
    store: &ResourceStore,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    changes: &[LabelChange],
    overwrite: bool,
) -> Result<Relabelled, LabelError> {
    let Some(mut resource) = store.get(kind, namespace, name).await? else {
        let shown = namespace.map_or_else(|| name.to_owned(), |ns| format!("{ns}/{name}"));
        return Err(StoreError::NotFound(format!("{} {shown}", kind.name())).into());
    };
    let before = resource.metadata().labels.clone();
    let what = resource.describe();
    apply_changes(
        &mut resource.metadata_mut().labels,
        changes,
        overwrite,
        &what,
    )
    .map_err(LabelError::Rejected)?;
    let endpoints = if kind == Kind::Pod {
        relabelled_endpoints(store, &resource).await?
    } else {
        Vec::new()
    };
    let unchanged = resource.metadata().labels == before && endpoints.is_empty();
    if unchanged {
        return Ok(Relabelled {
            written: Vec::new(),
            unchanged: true,
        });
    }
    // Endpoints first: if the pod's write then loses a race, the retry starts again from
    // the pod's old labels, which the requested changes still apply to.
    let mut all = endpoints;
    all.push(resource);
    tortie_resources::validate_all(&all).map_err(|problems| {
        LabelError::Rejected(format!(
            "the new labels are not valid, nothing was written:\n{}",
            problems.join("\n")
        ))
    })?;
    let mut written = Vec::new();
    for resource in &all {
        store.replace(resource).await?;
        written.push(resource.describe());
    }
    Ok(Relabelled {
        written,
        unchanged: false,
    })
}

/// The pod's workload endpoints whose labels differ from the pod's new ones, relabelled:
/// the pod's labels plus the endpoint's own `projectcalico.org/…` labels.
async fn relabelled_endpoints(
    store: &ResourceStore,
    pod: &Resource,
) -> Result<Vec<Resource>, StoreError> {
    let namespace = pod.namespace();
    let mut changed = Vec::new();
    for mut resource in store.list(Kind::WorkloadEndpoint, namespace).await? {
        let Resource::WorkloadEndpoint(wep) = &mut resource else {
            continue;
        };
        if wep.spec.pod.as_deref() != Some(pod.name()) {
            continue;
        }
        let mut labels: BTreeMap<String, String> = wep
            .metadata
            .labels
            .iter()
            .filter(|(key, _)| key.starts_with(CALICO_LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, value) in &pod.metadata().labels {
            if !key.starts_with(CALICO_LABEL_PREFIX) {
                labels.insert(key.clone(), value.clone());
            }
        }
        if labels != wep.metadata.labels {
            wep.metadata.labels = labels;
            changed.push(resource);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sets_and_removals() {
        assert_eq!(
            LabelChange::parse("app=web", false),
            Ok(LabelChange::Set("app".into(), "web".into()))
        );
        assert_eq!(
            LabelChange::parse("app=", false),
            Ok(LabelChange::Set("app".into(), String::new()))
        );
        assert_eq!(
            LabelChange::parse("app-", false),
            Ok(LabelChange::Remove("app".into()))
        );
        assert_eq!(
            LabelChange::parse("app", true),
            Ok(LabelChange::Remove("app".into()))
        );
        assert!(LabelChange::parse("app", false).is_err());
        assert!(LabelChange::parse("=web", false).is_err());
        assert!(LabelChange::parse("app=web", true).is_err());
        assert!(LabelChange::parse("-", false).is_err());
    }

    #[test]
    fn overwriting_and_removing_follow_kubectl() {
        let mut labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let change = [LabelChange::Set("app".into(), "db".into())];
        let err = apply_changes(&mut labels, &change, false, "Pod x/a").unwrap_err();
        assert!(err.contains("--overwrite"), "{err}");
        assert_eq!(labels["app"], "web", "a refused change changes nothing");
        apply_changes(&mut labels, &change, true, "Pod x/a").unwrap();
        assert_eq!(labels["app"], "db");
        // Setting the value it already has is not a change and needs no --overwrite.
        apply_changes(&mut labels, &change, false, "Pod x/a").unwrap();
        let err = apply_changes(
            &mut labels,
            &[LabelChange::Remove("tier".into())],
            false,
            "Pod x/a",
        )
        .unwrap_err();
        assert!(err.contains("no label tier"), "{err}");
        apply_changes(
            &mut labels,
            &[LabelChange::Remove("app".into())],
            false,
            "Pod x/a",
        )
        .unwrap();
        assert!(labels.is_empty());
    }
}
