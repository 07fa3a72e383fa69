//! STATUS: can an ADD succeed now? The datastore must answer and offer at least one usable
//! IP pool; otherwise code 50 with the reason, and the runtime holds pods back.

use crate::{
    config::NetConf,
    spec::{CniError, ErrorCode},
    store,
};

fn not_available(error: CniError) -> CniError {
    let details = if error.details.is_empty() {
        error.msg.clone()
    } else {
        format!("{}: {}", error.msg, error.details)
    };
    CniError::new(ErrorCode::PluginNotAvailable, "plugin not available").details(details)
}

pub(super) async fn run(conf: &NetConf) -> Result<(), CniError> {
    let store = store::connect(&conf.etcd_endpoints)
        .await
        .map_err(not_available)?;
    let pools = store::ip_pools(&store).await.map_err(not_available)?;
    let usable = store::usable_pools(&pools, &conf.nodename);
    if usable.is_empty() {
        return Err(CniError::new(ErrorCode::PluginNotAvailable, "plugin not available").details(format!(
            "no enabled IPv4 IP pool for node {} among {} pool(s) in the datastore; create one (nodeSelector all())",
            conf.nodename,
            pools.len()
        )));
    }
    tracing::info!(pools = usable.len(), "ready");
    Ok(())
}
