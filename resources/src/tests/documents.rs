//! Multi-document parsing, lists, JSON, and errors that name the failing document.

use super::samples;
use crate::*;

fn parse_error(text: &str) -> ParseError {
    match parse_documents(text) {
        Ok(resources) => panic!("parsed {} resources from invalid input", resources.len()),
        Err(e) => e,
    }
}

#[test]
fn yaml_documents_in_order_with_empty_ones_skipped() {
    let text = format!(
        "---\n# pools\n{}---\n---\n{}\n---\n",
        samples::IPPOOL_V4,
        samples::NETWORK_POLICY
    );
    let resources = parse_documents(&text).unwrap();
    let kinds: Vec<Kind> = resources.iter().map(Resource::kind).collect();
    assert_eq!(kinds, vec![Kind::IpPool, Kind::NetworkPolicy]);
    assert!(parse_documents("").unwrap().is_empty());
    assert!(parse_documents("# nothing here\n---\n").unwrap().is_empty());
}

#[test]
fn lists_of_resources() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: IPPoolList
metadata:
  resourceVersion: '99'
items:
  - metadata:
      name: pool-a
    spec:
      cidr: 10.1.0.0/16
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata:
      name: pool-b
    spec:
      cidr: 10.2.0.0/16
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Namespace
    metadata:
      name: prod
  - apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata:
      name: deny-all
";
    let resources = parse_documents(text).unwrap();
    let names: Vec<(Kind, &str)> = resources.iter().map(|r| (r.kind(), r.name())).collect();
    assert_eq!(
        names,
        vec![
            (Kind::IpPool, "pool-a"),
            (Kind::IpPool, "pool-b"),
            (Kind::Namespace, "prod"),
            (Kind::GlobalNetworkPolicy, "deny-all"),
        ]
    );
}

#[test]
fn json_object_array_list_and_stream() {
    let pools = parse_documents(samples::IPPOOL_V4).unwrap();
    let one = to_json(&pools);
    assert!(
        one.starts_with("{\n  \"apiVersion\": \"projectcalico.org/v3\",\n  \"kind\": \"IPPool\""),
        "{one}"
    );
    assert_eq!(parse_documents(&one).unwrap(), pools);

    let mut two = pools.clone();
    two.extend(parse_documents(samples::IPPOOL_V6).unwrap());
    let list = to_json(&two);
    let value: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(value["kind"], "IPPoolList");
    assert_eq!(value["apiVersion"], "projectcalico.org/v3");
    assert_eq!(parse_documents(&list).unwrap(), two);

    let mut mixed = two.clone();
    mixed.extend(parse_documents(samples::NAMESPACE).unwrap());
    let value: serde_json::Value = serde_json::from_str(&to_json(&mixed)).unwrap();
    assert_eq!(value["kind"], "List");
    assert_eq!(value["apiVersion"], "v1");
    assert_eq!(parse_documents(&to_json(&mixed)).unwrap(), mixed);

    let empty: serde_json::Value = serde_json::from_str(&to_json(&[])).unwrap();
    assert_eq!(empty["items"], serde_json::json!([]));

    let array = format!(
        "[{}, {}]",
        serde_json::to_string(&two[0]).unwrap(),
        serde_json::to_string(&two[1]).unwrap()
    );
    assert_eq!(parse_documents(&array).unwrap(), two);
    let stream = format!(
        "{}\n{}\n",
        serde_json::to_string(&two[0]).unwrap(),
        serde_json::to_string(&two[1]).unwrap()
    );
    assert_eq!(parse_documents(&stream).unwrap(), two);

    // Flow-style YAML that is not JSON still parses.
    let flow = "{apiVersion: v1, kind: Namespace, metadata: {name: prod}}";
    assert_eq!(parse_documents(flow).unwrap()[0].name(), "prod");
}

#[test]
fn yaml_output_separates_documents() {
    let resources = parse_documents(samples::BGP_PEERS).unwrap();
    let yaml = to_yaml(&resources);
    assert_eq!(yaml.matches("---\n").count(), 1);
    assert!(yaml.starts_with("apiVersion: projectcalico.org/v3\nkind: BGPPeer\n"));
    assert_eq!(to_yaml(&[]), "");
}

#[test]
fn unknown_kind_names_the_document() {
    let text = format!(
        "{}---\napiVersion: projectcalico.org/v3\nkind: IPPol\nmetadata:\n  name: pool-b\n",
        samples::IPPOOL_V4
    );
    let err = parse_error(&text);
    assert_eq!(err.document, 2);
    assert_eq!(err.name.as_deref(), Some("pool-b"));
    assert_eq!(
        err.to_string(),
        "document 2 (IPPol pool-b): unknown kind \"IPPol\": supported kinds are IPPool, \
         IPAMConfiguration, Node, WorkloadEndpoint, BGPPeer, BGPConfiguration, NetworkPolicy, \
         GlobalNetworkPolicy and Profile (projectcalico.org/v3), NetworkPolicy \
         (networking.k8s.io/v1), Namespace and Pod (v1)"
    );
    let err = parse_error("apiVersion: projectcalico.org/v3\nkind: ippool\nmetadata:\n  name: p\n");
    assert!(err.to_string().contains("(did you mean IPPool?)"), "{err}");
}

#[test]
fn wrong_or_missing_api_version_and_kind() {
    let err = parse_error(
        "apiVersion: projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: p\nspec:\n  cidr: 10.0.0.0/8\n",
    );
    assert_eq!(
        err.to_string(),
        "document 1 (IPPool p): kind IPPool does not exist in apiVersion \
         \"projectcalico.org/v1\": use projectcalico.org/v3"
    );
    let err = parse_error("kind: NetworkPolicy\nmetadata:\n  name: p\n");
    assert_eq!(
        err.to_string(),
        "document 1 (NetworkPolicy p): missing `apiVersion` for kind NetworkPolicy: use \
         projectcalico.org/v3 or networking.k8s.io/v1"
    );
    let err = parse_error("apiVersion: v1\nmetadata:\n  name: p\n");
    assert!(
        err.to_string()
            .starts_with("document 1 (p): missing `kind`"),
        "{err}"
    );
    let err = parse_error("just a string");
    assert_eq!(
        err.to_string(),
        "document 1: expected a resource (a map with apiVersion, kind, metadata and spec), \
         found a string"
    );
}

#[test]
fn field_errors_carry_their_path() {
    let text = format!(
        "{}---\n{}",
        samples::IPPOOL_V4,
        samples::IPPOOL_V6.replace("vxlanMode: Always", "vxlanMode: always")
    );
    let err = parse_error(&text);
    assert_eq!(err.document, 2);
    assert_eq!(err.path.as_deref(), Some("spec.vxlanMode"));
    assert_eq!(
        err.to_string(),
        "document 2 (IPPool default-ipv6-ippool): spec.vxlanMode: unknown variant `always`, \
         expected one of `Never`, `Always`, `CrossSubnet`"
    );

    let err = parse_error(&samples::IPPOOL_V4.replace("natOutgoing", "natOutgoin"));
    assert_eq!(err.path.as_deref(), Some("spec.natOutgoin"));
    assert!(
        err.reason
            .starts_with("unknown field `natOutgoin`, expected one of"),
        "{err}"
    );

    let err = parse_error(&samples::GLOBAL_NETWORK_POLICY.replace("- 6379", "- 70000"));
    assert_eq!(
        err.path.as_deref(),
        Some("spec.ingress[0].destination.ports[0]")
    );
    assert_eq!(err.reason, "port 70000 is out of range: must be 1 to 65535");

    let err = parse_error(&samples::NODE.replacen("labels:", "lables:", 1));
    assert_eq!(err.path.as_deref(), Some("metadata.lables"));

    let err = parse_error(&samples::GLOBAL_NETWORK_POLICY.replace("action: Deny", "action: Drop"));
    assert_eq!(err.path.as_deref(), Some("spec.ingress[2].action"));

    let err = parse_error(
        &samples::WORKLOAD_ENDPOINT.replace("'1337495556942031415'", "1337495556942031415"),
    );
    assert_eq!(err.path.as_deref(), Some("spec.containerID"));
    assert!(err.reason.starts_with("invalid type: integer"), "{err}");
}

#[test]
fn list_item_errors_name_the_item() {
    let text = "\
apiVersion: projectcalico.org/v3
kind: IPPoolList
items:
  - metadata:
      name: pool-a
  - metadata:
      name: pool-b
    spec:
      blockSize: big
";
    let err = parse_error(text);
    assert_eq!((err.document, err.item), (1, Some(1)));
    assert_eq!(
        err.to_string(),
        "document 1, items[1] (IPPool pool-b): spec.blockSize: invalid type: string \"big\", \
         expected i32"
    );
}

#[test]
fn syntax_errors_name_the_document() {
    let text = format!("{}---\nkind: [unclosed\n", samples::IPPOOL_V4);
    let err = parse_error(&text);
    assert_eq!(err.document, 2);
    assert!(
        err.to_string().starts_with("document 2: invalid YAML: "),
        "{err}"
    );
    assert!(err.reason.contains("line"), "{err}");

    let err = parse_error("{\"apiVersion\": \"v1\"}\n{\"kind\": ");
    assert_eq!(err.document, 2);
    assert!(
        err.to_string().starts_with("document 2: invalid JSON: "),
        "{err}"
    );
}

#[test]
fn resources_deserialize_from_stored_json() {
    let stored = r#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p","resourceVersion":"7"},"spec":{"cidr":"10.0.0.0/8","ipipMode":"Sometimes"}}"#;
    let err = serde_json::from_str::<Resource>(stored).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("IPPool p: spec.ipipMode: unknown variant `Sometimes`"),
        "{err}"
    );
    let ok = stored.replace("Sometimes", "Always");
    let resource: Resource = serde_json::from_str(&ok).unwrap();
    assert_eq!(resource.metadata().resource_version.as_deref(), Some("7"));
}
