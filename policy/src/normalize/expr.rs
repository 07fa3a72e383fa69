//! Conditions on one end of a flow: atoms (an address block, a set of endpoints) and
//! boolean expressions over them.
//!
//! Rules say which peers they match as an [`Expr`] over [`Atom`]s. The compiler groups
//! addresses by which atoms they satisfy (their identity class); the reference evaluator
//! checks the atoms of one concrete address. Both read the same atoms, so the two can only
//! disagree on what the compiler adds: classes, address partitions and map encoding.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use tortie_resources::Selector;

use super::NormEndpoint;

/// Which namespaces an [`EndpointFilter`] looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum NsScope {
    /// Every namespace.
    Any,
    /// One namespace (the policy's own).
    Named(String),
    /// Namespaces whose labels match.
    Selector(Selector),
}

/// A `serviceAccounts` match: the endpoint's account is one of `names` (when any) and the
/// account's labels match `selector` (when set).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AccountMatch {
    /// Sorted, without duplicates; empty = any name.
    pub names: Vec<String>,
    pub selector: Option<Selector>,
}

/// A set of endpoints: those in `scope` whose service account and labels match.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EndpointFilter {
    pub scope: NsScope,
    pub accounts: Option<AccountMatch>,
    pub selector: Option<Selector>,
}

impl EndpointFilter {
    /// Whether the endpoint is in the set.
    pub fn matches(&self, ep: &NormEndpoint) -> bool {
        let in_scope = match &self.scope {
            NsScope::Any => true,
            NsScope::Named(ns) => ep.namespace == *ns,
            NsScope::Selector(sel) => sel.matches(&*ep.namespace_labels),
        };
        in_scope
            && self.accounts.as_ref().is_none_or(|accounts| {
                // Calico matches names through the endpoint's service-account label and the
                // selector through the account's labels (its `pcsa.` profile labels).
                let name_ok = accounts.names.is_empty()
                    || ep
                        .labels
                        .get(crate::model::LABEL_CALICO_SERVICE_ACCOUNT)
                        .is_some_and(|sa| accounts.names.binary_search(sa).is_ok());
                name_ok
                    && accounts
                        .selector
                        .as_ref()
                        .is_none_or(|sel| sel.matches(&*ep.account_labels))
            })
            && self
                .selector
                .as_ref()
                .is_none_or(|sel| sel.matches(&ep.labels))
    }
}

/// An indivisible condition on an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Atom {
    /// The address is inside this (truncated) block.
    Net(Ipv4Net),
    /// The address belongs to an endpoint in this set.
    Endpoints(Box<EndpointFilter>),
}

impl Atom {
    /// The atom for a set of endpoints.
    pub fn endpoints(filter: EndpointFilter) -> Atom {
        Atom::Endpoints(Box::new(filter))
    }

    /// Text naming the atom unambiguously (strings are quoted with escapes, so no atom's text
    /// contains a newline), used in identity signatures that must be equal exactly when the
    /// atoms are.
    pub fn canonical(&self) -> String {
        match self {
            Atom::Net(net) => format!("net {net}"),
            Atom::Endpoints(filter) => {
                let mut text = String::from("endpoints");
                match &filter.scope {
                    NsScope::Any => {}
                    NsScope::Named(ns) => text.push_str(&format!(" namespace={ns:?}")),
                    NsScope::Selector(sel) => {
                        text.push_str(&format!(" namespaceSelector={:?}", sel.as_str()))
                    }
                }
                if let Some(accounts) = &filter.accounts {
                    if !accounts.names.is_empty() {
                        text.push_str(&format!(" serviceAccounts={:?}", accounts.names));
                    }
                    if let Some(sel) = &accounts.selector {
                        text.push_str(&format!(" serviceAccountSelector={:?}", sel.as_str()));
                    }
                }
                if let Some(sel) = &filter.selector {
                    text.push_str(&format!(" selector={:?}", sel.as_str()));
                }
                text
            }
        }
    }

    /// Whether an address, owned by `endpoint` when it is a pod's, satisfies the atom.
    pub fn holds(&self, addr: std::net::Ipv4Addr, endpoint: Option<&NormEndpoint>) -> bool {
        match self {
            Atom::Net(net) => net.contains(&addr),
            Atom::Endpoints(filter) => endpoint.is_some_and(|ep| filter.matches(ep)),
        }
    }
}

/// A boolean expression over atoms of type `A`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Expr<A> {
    True,
    False,
    Atom(A),
    Not(Box<Expr<A>>),
    And(Vec<Expr<A>>),
    Or(Vec<Expr<A>>),
}

impl<A> Expr<A> {
    /// The conjunction, with constants folded.
    pub fn all(parts: Vec<Expr<A>>) -> Expr<A> {
        let mut kept = Vec::new();
        for part in parts {
            match part {
                Expr::True => {}
                Expr::False => return Expr::False,
                Expr::And(inner) => kept.extend(inner),
                other => kept.push(other),
            }
        }
        match kept.len() {
            0 => Expr::True,
            1 => kept.pop().unwrap_or(Expr::True),
            _ => Expr::And(kept),
        }
    }

    /// The disjunction, with constants folded.
    pub fn any(parts: Vec<Expr<A>>) -> Expr<A> {
        let mut kept = Vec::new();
        for part in parts {
            match part {
                Expr::False => {}
                Expr::True => return Expr::True,
                Expr::Or(inner) => kept.extend(inner),
                other => kept.push(other),
            }
        }
        match kept.len() {
            0 => Expr::False,
            1 => kept.pop().unwrap_or(Expr::False),
            _ => Expr::Or(kept),
        }
    }

    /// The negation, with constants folded.
    pub fn negate(self) -> Expr<A> {
        match self {
            Expr::True => Expr::False,
            Expr::False => Expr::True,
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// Evaluates with `atom` deciding each atom.
    pub fn eval(&self, atom: &mut impl FnMut(&A) -> bool) -> bool {
        match self {
            Expr::True => true,
            Expr::False => false,
            Expr::Atom(a) => atom(a),
            Expr::Not(inner) => !inner.eval(atom),
            Expr::And(parts) => parts.iter().all(|p| p.eval(atom)),
            Expr::Or(parts) => parts.iter().any(|p| p.eval(atom)),
        }
    }

    /// The same expression with every atom replaced.
    pub fn map<B>(&self, f: &mut impl FnMut(&A) -> B) -> Expr<B> {
        match self {
            Expr::True => Expr::True,
            Expr::False => Expr::False,
            Expr::Atom(a) => Expr::Atom(f(a)),
            Expr::Not(inner) => Expr::Not(Box::new(inner.map(f))),
            Expr::And(parts) => Expr::And(parts.iter().map(|p| p.map(f)).collect()),
            Expr::Or(parts) => Expr::Or(parts.iter().map(|p| p.map(f)).collect()),
        }
    }

    /// Calls `f` on every atom.
    #[cfg(test)]
    pub fn visit(&self, f: &mut impl FnMut(&A)) {
        match self {
            Expr::True | Expr::False => {}
            Expr::Atom(a) => f(a),
            Expr::Not(inner) => inner.visit(f),
            Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|p| p.visit(f)),
        }
    }
}

/// Labels with defaults added where absent.
pub(crate) fn with_defaults(
    labels: &BTreeMap<String, String>,
    defaults: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    for (key, value) in defaults {
        out.entry((*key).to_string())
            .or_insert_with(|| (*value).to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_fold() {
        let a: Expr<u32> = Expr::Atom(1);
        assert_eq!(Expr::all(vec![Expr::True, a.clone()]), a);
        assert_eq!(Expr::all(vec![Expr::False, a.clone()]), Expr::False);
        assert_eq!(Expr::any(vec![Expr::False, a.clone()]), a);
        assert_eq!(Expr::any(vec![Expr::True, a.clone()]), Expr::True);
        assert_eq!(Expr::<u32>::all(vec![]), Expr::True);
        assert_eq!(Expr::<u32>::any(vec![]), Expr::False);
        assert_eq!(a.clone().negate().negate(), a);
    }

    #[test]
    fn evaluates_nested() {
        let e = Expr::all(vec![
            Expr::any(vec![Expr::Atom(1), Expr::Atom(2)]),
            Expr::Atom(3).negate(),
        ]);
        let truth = |set: &'static [u32]| move |a: &u32| set.contains(a);
        assert!(e.eval(&mut truth(&[1])));
        assert!(e.eval(&mut truth(&[2])));
        assert!(!e.eval(&mut truth(&[1, 3])));
        assert!(!e.eval(&mut truth(&[])));
        let mut seen = Vec::new();
        e.visit(&mut |a| seen.push(*a));
        assert_eq!(seen, vec![1, 2, 3]);
    }

    #[test]
    fn canonical_text_quotes_strings() {
        let filter = EndpointFilter {
            scope: NsScope::Named("prod".into()),
            accounts: None,
            selector: Some(Selector::parse("app == 'web'").unwrap()),
        };
        assert_eq!(
            Atom::endpoints(filter).canonical(),
            r#"endpoints namespace="prod" selector="app == \"web\"""#
        );
        assert_eq!(
            Atom::Net("10.0.0.0/8".parse().unwrap()).canonical(),
            "net 10.0.0.0/8"
        );
    }
}
