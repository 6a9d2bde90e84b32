//! The API server's objects and the semantics the operator relies on:
//! resource versions, generations, status subresources, server-side apply
//! (as a deep merge), merge and JSON patches, finalizers with deletion
//! timestamps, owner-reference garbage collection, and a log of every
//! change that watches replay from any resource version.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// Where an object lives: `group/version`, plural, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `v1`, `apps/v1`, `strata.dev/v1alpha1`...
    pub api: String,
    /// `pods`, `statefulsets`...
    pub plural: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resource version it produced.
    pub version: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    /// Where.
    pub key: Key,
    /// The object after the change (before it, for `DELETED`).
    pub object: Value,
}

/// Why a request fails, as an HTTP status and a Kubernetes reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `BadRequest`, `Invalid`.
    pub reason: &'static str,
    /// Words.
    pub message: String,
}

impl Refusal {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
        }
    }

    fn not_found(key: &Key) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", key.plural, key.name),
        )
    }
}

/// How a PATCH body applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// Server-side apply (`application/apply-patch+yaml`).
    Apply,
    /// JSON merge patch (merge and strategic merge).
    Merge,
    /// JSON patch (RFC 6902).
    Json,
}

/// Kinds whose `status` is a subresource: writes to the object leave it,
/// writes to `/status` change only it.
const WITH_STATUS: [&str; 5] = [
    "kvclusters",
    "statefulsets",
    "pods",
    "persistentvolumeclaims",
    "poddisruptionbudgets",
];

/// Every object and every change.
#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    version: u64,
    uid: u64,
    log: Vec<Change>,
    changes: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            version: 1,
            uid: 0,
            log: Vec::new(),
            changes: broadcast::channel(4096).0,
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Store {
    /// The current resource version.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Changes after `version` and a receiver of every later one (taken
    /// under the same lock, so none is missed or repeated).
    pub fn since(&self, version: u64) -> (Vec<Change>, broadcast::Receiver<Change>) {
        let past = self
            .log
            .iter()
            .filter(|c| c.version > version)
            .cloned()
            .collect();
        (past, self.changes.subscribe())
    }

    /// One object.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn get(&self, key: &Key) -> Result<Value, Refusal> {
        self.objects
            .get(key)
            .cloned()
            .ok_or_else(|| Refusal::not_found(key))
    }

    /// The objects of `api`/`plural` (in `namespace`, or all).
    #[must_use]
    pub fn list(&self, api: &str, plural: &str, namespace: Option<&str>) -> Vec<(Key, Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| {
                k.api == api && k.plural == plural && namespace.is_none_or(|n| k.namespace == n)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn record(&mut self, kind: &'static str, key: &Key, object: Value) {
        let change = Change {
            version: self.version,
            kind,
            key: key.clone(),
            object,
        };
        self.log.push(change.clone());
        // No receiver is fine.
        let _ = self.changes.send(change);
    }

    fn bump(&mut self, object: &mut Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
    }

    /// Creates `object` at `key`.
    ///
    /// # Errors
    /// `AlreadyExists`.
    pub fn create(&mut self, key: &Key, mut object: Value) -> Result<Value, Refusal> {
        if self.objects.contains_key(key) {
            return Err(Refusal::new(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", key.plural, key.name),
            ));
        }
        if !object.is_object() {
            return Err(Refusal::new(400, "BadRequest", "not an object".into()));
        }
        // A custom resource's status is not set on create.
        if key.plural == "kvclusters" {
            object.as_object_mut().map(|o| o.remove("status"));
        }
        self.uid += 1;
        let meta = object
            .as_object_mut()
            .expect("checked")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        meta["name"] = json!(key.name);
        meta["namespace"] = json!(key.namespace);
        meta["uid"] = json!(format!("uid-{}", self.uid));
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
        }
        self.bump(&mut object);
        self.objects.insert(key.clone(), object.clone());
        self.record("ADDED", key, object.clone());
        Ok(object)
    }

    /// Replaces the object (or its status) with `object`; a
    /// `resourceVersion` in it must match.
    ///
    /// # Errors
    /// `NotFound`, `Conflict`.
    pub fn replace(&mut self, key: &Key, object: Value, status: bool) -> Result<Value, Refusal> {
        let current = self.get(key)?;
        if let Some(expected) = object["metadata"]["resourceVersion"].as_str()
            && Some(expected) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(Refusal::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified",
                    key.plural, key.name
                ),
            ));
        }
        self.store(key, current, object, status)
    }

    /// Patches the object (or its status).
    ///
    /// # Errors
    /// `NotFound` (merge and JSON patches), `Invalid` for a JSON patch
    /// whose test fails.
    pub fn patch(
        &mut self,
        key: &Key,
        kind: PatchKind,
        patch: &Value,
        status: bool,
    ) -> Result<Value, Refusal> {
        let current = match self.objects.get(key) {
            Some(c) => c.clone(),
            None if kind == PatchKind::Apply && !status => {
                return self.create(key, patch.clone());
            }
            None => return Err(Refusal::not_found(key)),
        };
        let mut next = current.clone();
        match kind {
            PatchKind::Apply => deep_merge(&mut next, patch, false),
            PatchKind::Merge => deep_merge(&mut next, patch, true),
            PatchKind::Json => {
                // As the API server does: `test` of a missing path against
                // null passes (kube's finalizer helper relies on it).
                let mut ops = patch.clone();
                if let Some(list) = ops.as_array_mut() {
                    list.retain(|op| {
                        !(op["op"] == "test"
                            && op["value"].is_null()
                            && op["path"]
                                .as_str()
                                .is_some_and(|p| next.pointer(p).is_none()))
                    });
                }
                let ops: json_patch::Patch = serde_json::from_value(ops)
                    .map_err(|e| Refusal::new(400, "BadRequest", e.to_string()))?;
                json_patch::patch(&mut next, &ops)
                    .map_err(|e| Refusal::new(422, "Invalid", e.to_string()))?;
            }
        }
        self.store(key, current, next, status)
    }

    /// Stores `next` in place of `current`, honoring the status
    /// subresource, generations and finalizers.
    fn store(
        &mut self,
        key: &Key,
        current: Value,
        mut next: Value,
        status: bool,
    ) -> Result<Value, Refusal> {
        if WITH_STATUS.contains(&key.plural.as_str()) {
            if status {
                let new_status = next.get("status").cloned();
                next = current.clone();
                match new_status {
                    Some(s) => next["status"] = s,
                    None => {
                        next.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            } else {
                match current.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        next.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            }
        }
        // Identity fields are the server's.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "name",
            "namespace",
        ] {
            match current["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    next["metadata"].as_object_mut().map(|m| m.remove(field));
                }
            }
        }
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        next["metadata"]["generation"] = json!(if without_meta_and_status(&current)
            == without_meta_and_status(&next)
        {
            generation
        } else {
            generation + 1
        });
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if next == current {
            return Ok(current);
        }
        self.bump(&mut next);
        let deleting = next["metadata"]["deletionTimestamp"].is_string();
        let finalizers = next["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if deleting && !finalizers {
            self.remove(key, next.clone());
            return Ok(next);
        }
        self.objects.insert(key.clone(), next.clone());
        self.record("MODIFIED", key, next.clone());
        Ok(next)
    }

    /// Deletes the object: at once without finalizers, else it gets a
    /// deletion timestamp and goes when the last finalizer is removed.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn delete(&mut self, key: &Key) -> Result<Value, Refusal> {
        let mut object = self.get(key)?;
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            if object["metadata"]["deletionTimestamp"].is_string() {
                return Ok(object);
            }
            object["metadata"]["deletionTimestamp"] = json!(now());
            self.bump(&mut object);
            self.objects.insert(key.clone(), object.clone());
            self.record("MODIFIED", key, object.clone());
            return Ok(object);
        }
        self.bump(&mut object);
        self.remove(key, object.clone());
        Ok(object)
    }

    /// Removes the object and, like the garbage collector, every object
    /// it owns (through owner references).
    fn remove(&mut self, key: &Key, object: Value) {
        self.objects.remove(key);
        let uid = object["metadata"]["uid"].as_str().map(str::to_owned);
        self.record("DELETED", key, object);
        let Some(uid) = uid else {
            return;
        };
        let owned: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for child in owned {
            let _ = self.delete(&child);
        }
    }
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    copy
}

/// Merges `patch` into `target`: objects recursively, anything else
/// replaced; with `nulls_delete` (merge patch) a null removes the field.
fn deep_merge(target: &mut Value, patch: &Value, nulls_delete: bool) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => merge_maps(target, patch, nulls_delete),
        (target, patch) => *target = patch.clone(),
    }
}

fn merge_maps(target: &mut Map<String, Value>, patch: &Map<String, Value>, nulls_delete: bool) {
    for (k, v) in patch {
        if v.is_null() && nulls_delete {
            target.remove(k);
            continue;
        }
        match target.get_mut(k) {
            Some(existing) if existing.is_object() && v.is_object() => {
                deep_merge(existing, v, nulls_delete);
            }
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            api: "strata.dev/v1alpha1".into(),
            plural: "kvclusters".into(),
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn status_is_a_subresource_and_generation_follows_the_spec() {
        let mut store = Store::default();
        let k = key("kv");
        store
            .create(
                &k,
                json!({ "spec": { "replicas": 3 }, "status": { "x": 1 } }),
            )
            .expect("create");
        let got = store.get(&k).expect("get");
        assert_eq!(got["status"], Value::Null, "status dropped on create");
        assert_eq!(got["metadata"]["generation"], 1);
        store
            .patch(
                &k,
                PatchKind::Merge,
                &json!({ "status": { "phase": "Running" } }),
                true,
            )
            .expect("status");
        let got = store
            .patch(
                &k,
                PatchKind::Merge,
                &json!({ "spec": { "replicas": 5 }, "status": { "phase": "x" } }),
                false,
            )
            .expect("spec");
        assert_eq!(
            got["status"]["phase"], "Running",
            "main writes keep the status"
        );
        assert_eq!(got["metadata"]["generation"], 2);
        let stale = json!({ "metadata": { "resourceVersion": "1" }, "spec": {} });
        assert_eq!(
            store.replace(&k, stale, false).expect_err("stale").code,
            409
        );
    }

    #[test]
    fn finalizers_hold_a_deletion_and_owners_take_their_objects_along() {
        let mut store = Store::default();
        let k = key("kv");
        let owner = store
            .create(&k, json!({ "metadata": { "finalizers": ["f"] } }))
            .expect("create");
        let child = Key {
            api: "v1".into(),
            plural: "configmaps".into(),
            namespace: "ns".into(),
            name: "c".into(),
        };
        store
            .create(
                &child,
                json!({ "metadata": { "ownerReferences": [{ "uid": owner["metadata"]["uid"] }] } }),
            )
            .expect("child");
        let deleting = store.delete(&k).expect("delete");
        assert!(deleting["metadata"]["deletionTimestamp"].is_string());
        assert!(store.get(&child).is_ok(), "owner still there");
        store
            .patch(
                &k,
                PatchKind::Json,
                &json!([{ "op": "test", "path": "/metadata/finalizers/0", "value": "f" },
                        { "op": "remove", "path": "/metadata/finalizers/0" }]),
                false,
            )
            .expect("remove finalizer");
        assert_eq!(store.get(&k).expect_err("gone").code, 404);
        assert_eq!(store.get(&child).expect_err("collected").code, 404);
        let kinds: Vec<_> = store.since(0).0.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["ADDED", "ADDED", "MODIFIED", "DELETED", "DELETED"]);
    }
}
