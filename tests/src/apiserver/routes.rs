//! HTTP routes of the in-process API server: paths to store operations,
//! list and watch responses, Kubernetes `Status` errors.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Shared;
use super::store::{Change, Key, PatchKind, Refusal};

type AppState = (Arc<Shared>, bool);

pub(crate) fn router(shared: Arc<Shared>, audit: bool) -> Router {
    Router::new()
        .route("/version", get(version))
        .fallback(handle)
        .with_state((shared, audit))
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-strata-test",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "", "compiler": "", "platform": "linux/amd64"
        }),
    )
}

/// A parsed resource path.
#[derive(Debug)]
struct Target {
    api: String,
    group: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api, group, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), String::new(), rest),
        ["apis", group, version, rest @ ..] => {
            (format!("{group}/{version}"), (*group).to_owned(), rest)
        }
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    if sub.is_some_and(|s| s != "status") {
        return None;
    }
    Some(Target {
        api,
        group,
        plural: plural.to_owned(),
        namespace,
        name: name.map(str::to_owned),
        status: sub.is_some(),
    })
}

async fn handle(
    State((shared, audit)): State<AppState>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(target) = parse(uri.path()) else {
        return refusal(&Refusal {
            code: 404,
            reason: "NotFound",
            message: format!("no route {}", uri.path()),
        });
    };
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&method, &target.name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if watching => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "unknown",
    };
    if audit {
        shared.audit.lock().expect("audit").insert((
            verb.to_owned(),
            target.group.clone(),
            target.plural.clone(),
            if target.status { "status" } else { "" }.to_owned(),
        ));
    }
    let body_json = || -> Result<Value, Refusal> {
        serde_json::from_slice(&body).map_err(|e| Refusal {
            code: 400,
            reason: "BadRequest",
            message: format!("body is not JSON: {e}"),
        })
    };
    let key = |name: &str| Key {
        api: target.api.clone(),
        plural: target.plural.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.to_owned(),
    };
    let selector = Selector::new(&query);
    let result = match verb {
        "watch" => return watch(&shared, &target, &query, selector),
        "list" => {
            let store = shared.store.lock().expect("store");
            let items: Vec<Value> = store
                .list(&target.api, &target.plural, target.namespace.as_deref())
                .into_iter()
                .map(|(_, v)| v)
                .filter(|v| selector.matches(v))
                .collect();
            Ok((
                StatusCode::OK,
                json!({
                    "apiVersion": target.api,
                    "kind": format!("{}List", kind_of(&target.plural)),
                    "metadata": { "resourceVersion": store.version().to_string() },
                    "items": items,
                }),
            ))
        }
        "get" => {
            let store = shared.store.lock().expect("store");
            store
                .get(&key(target.name.as_deref().unwrap_or_default()))
                .map(|v| (StatusCode::OK, v))
        }
        "create" => body_json().and_then(|object| {
            let name = object["metadata"]["name"].as_str().map_or_else(
                || {
                    let prefix = object["metadata"]["generateName"]
                        .as_str()
                        .unwrap_or("obj-");
                    let version = shared.store.lock().expect("store").version();
                    format!("{prefix}{version:x}")
                },
                str::to_owned,
            );
            let mut store = shared.store.lock().expect("store");
            store
                .create(&key(&name), object)
                .map(|v| (StatusCode::CREATED, v))
        }),
        "update" => body_json().and_then(|object| {
            let mut store = shared.store.lock().expect("store");
            store
                .replace(
                    &key(target.name.as_deref().unwrap_or_default()),
                    object,
                    target.status,
                )
                .map(|v| (StatusCode::OK, v))
        }),
        "patch" => body_json().and_then(|patch| {
            let content = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = if content.starts_with("application/apply-patch") {
                PatchKind::Apply
            } else if content.starts_with("application/json-patch") {
                PatchKind::Json
            } else {
                PatchKind::Merge
            };
            let mut store = shared.store.lock().expect("store");
            store
                .patch(
                    &key(target.name.as_deref().unwrap_or_default()),
                    kind,
                    &patch,
                    target.status,
                )
                .map(|v| (StatusCode::OK, v))
        }),
        "delete" => {
            let mut store = shared.store.lock().expect("store");
            store
                .delete(&key(target.name.as_deref().unwrap_or_default()))
                .map(|v| (StatusCode::OK, v))
        }
        _ => Err(Refusal {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{method} is not served"),
        }),
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(r) => refusal(&r),
    }
}

/// Equality label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`) and the
/// `metadata.name` / `metadata.namespace` field selectors.
struct Selector {
    labels: Vec<(String, Option<String>, bool)>,
    fields: Vec<(String, String)>,
}

impl Selector {
    fn new(query: &HashMap<String, String>) -> Self {
        let labels = query
            .get("labelSelector")
            .map(|s| {
                s.split(',')
                    .filter(|t| !t.is_empty())
                    .map(|term| {
                        if let Some((k, v)) = term.split_once("!=") {
                            (k.to_owned(), Some(v.to_owned()), false)
                        } else if let Some((k, v)) = term.split_once('=') {
                            (
                                k.to_owned(),
                                Some(v.trim_start_matches('=').to_owned()),
                                true,
                            )
                        } else if let Some(k) = term.strip_prefix('!') {
                            (k.to_owned(), None, false)
                        } else {
                            (term.to_owned(), None, true)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let fields = query
            .get("fieldSelector")
            .map(|s| {
                s.split(',')
                    .filter_map(|t| t.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.trim_start_matches('=').to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { labels, fields }
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let labels_ok = self.labels.iter().all(|(k, v, positive)| {
            let actual = labels.get(k).and_then(Value::as_str);
            let hit = match v {
                Some(v) => actual == Some(v.as_str()),
                None => actual.is_some(),
            };
            hit == *positive
        });
        let fields_ok = self.fields.iter().all(|(k, v)| match k.as_str() {
            "metadata.name" => object["metadata"]["name"].as_str() == Some(v.as_str()),
            "metadata.namespace" => object["metadata"]["namespace"].as_str() == Some(v.as_str()),
            _ => true,
        });
        labels_ok && fields_ok
    }
}

fn watch(
    shared: &Arc<Shared>,
    target: &Target,
    query: &HashMap<String, String>,
    selector: Selector,
) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let (initial, past, mut live) = {
        let store = shared.store.lock().expect("store");
        let initial: Vec<Change> = if from == 0 {
            store
                .list(&target.api, &target.plural, target.namespace.as_deref())
                .into_iter()
                .map(|(key, object)| Change {
                    version: 0,
                    kind: "ADDED",
                    key,
                    object,
                })
                .collect()
        } else {
            Vec::new()
        };
        let from = if from == 0 { store.version() } else { from };
        let (past, live) = store.since(from);
        (initial, past, live)
    };
    let api = target.api.clone();
    let plural = target.plural.clone();
    let namespace = target.namespace.clone();
    let wanted = move |c: &Change| {
        c.key.api == api
            && c.key.plural == plural
            && namespace.as_ref().is_none_or(|n| &c.key.namespace == n)
            && selector.matches(&c.object)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(async move {
        let line = |c: &Change| {
            let mut text = json!({ "type": c.kind, "object": c.object }).to_string();
            text.push('\n');
            Ok(Bytes::from(text))
        };
        let mut last = 0;
        for c in initial.iter().chain(&past) {
            last = last.max(c.version);
            if wanted(c) && tx.send(line(c)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                next = live.recv() => match next {
                    Ok(c) if c.version > last => {
                        last = c.version;
                        if wanted(&c) && tx.send(line(&c)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The client re-lists after the stream ends.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                },
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .expect("response")
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "pods" => "Pod",
        "services" => "Service",
        "configmaps" => "ConfigMap",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "statefulsets" => "StatefulSet",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        "kvclusters" => "KVCluster",
        "leases" => "Lease",
        "events" => "Event",
        _ => "Object",
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn refusal(r: &Refusal) -> Response {
    json_response(
        StatusCode::from_u16(r.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": r.message, "reason": r.reason, "code": r.code,
        }),
    )
}
