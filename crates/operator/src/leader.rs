//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator
//! replicas never both act. The decision is a pure function of the lease
//! and the clock; the loop around it writes with the lease's
//! `resourceVersion`, so of two replicas racing for an expired lease only
//! one write succeeds (the other gets a conflict and stays a follower).
//!
//! A leader renews every `duration / 3`. One that cannot renew before its
//! lease would expire stops acting (the process exits and is restarted as
//! a follower): it must assume another replica has taken over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

/// What to do with the lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it: create it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it.
    Follow {
        /// Who.
        holder: String,
    },
}

/// The decision for `me` given the lease (if any) at `now`.
#[must_use]
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration =
        SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(at) if at + duration > now => Decision::Follow { holder },
        _ => Decision::TakeOver,
    }
}

/// One replica's side of the election.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    duration: Duration,
}

impl Elector {
    /// Elects through Lease `name` in `api`'s namespace, as `me`.
    #[must_use]
    pub fn new(api: Api<Lease>, name: &str, me: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            me: me.to_owned(),
            duration,
        }
    }

    /// One round: `Ok(true)` when this replica holds the lease afterwards.
    ///
    /// # Errors
    /// The API server could not be reached (a conflict is not an error:
    /// someone else won).
    pub async fn round(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let now = Timestamp::now();
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.me,
            now,
        );
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let result = match decision {
            Decision::Follow { holder } => {
                tracing::debug!(%holder, "another replica leads");
                return Ok(false);
            }
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.me.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Decision::Renew | Decision::TakeOver => {
                let mut lease = current.unwrap_or_default();
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if decision == Decision::TakeOver {
                    spec.holder_identity = Some(self.me.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(MicroTime(now));
                // Replace carries the resourceVersion read above: a lost
                // race is a 409 Conflict.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.round().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot reach the API server");
                }
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease lasts, then
    /// returns: the caller must stop acting.
    pub async fn keep(&self) {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.round().await {
                Ok(true) => last = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("leader election: another replica took the lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "leader election: renewal failed"),
            }
            if last.elapsed() >= self.duration {
                tracing::error!("leader election: could not renew the lease in time");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("time"))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_fresh_lease_is_followed_and_an_expired_one_taken_over() {
        let at = |s| Timestamp::from_second(s).expect("time");
        assert_eq!(decide(None, "a", at(100)), Decision::Create);
        assert_eq!(decide(Some(&lease("a", 90)), "a", at(100)), Decision::Renew);
        assert_eq!(
            decide(Some(&lease("b", 90)), "a", at(100)),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease("b", 80)), "a", at(100)),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease("", 99)), "a", at(100)),
            Decision::TakeOver
        );
        let never_renewed = LeaseSpec {
            holder_identity: Some("b".into()),
            ..LeaseSpec::default()
        };
        assert_eq!(
            decide(Some(&never_renewed), "a", at(100)),
            Decision::TakeOver
        );
    }
}
