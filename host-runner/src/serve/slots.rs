//! Who may evaluate a review now. One review per core in all: more would add warm instances
//! (memory), not speed. And at most half the cores for the reviews of one namespace, so a tenant
//! whose objects are costly to review (or who sends many at once) waits behind itself instead of
//! starving every other tenant, as the API server's Priority and Fairness shares it by flow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ReviewSlots {
    all: Arc<Semaphore>,
    per_namespace: usize,
    /// A semaphore per namespace with reviews running or waiting; removed when the last one goes,
    /// so made-up namespaces leave nothing behind.
    namespaces: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// A review's right to run: held until its evaluation ends (not its answer).
pub struct Slot {
    _all: OwnedSemaphorePermit,
    _namespace: NamespaceHold,
}

struct NamespaceHold {
    namespaces: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    name: String,
    semaphore: Option<Arc<Semaphore>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for NamespaceHold {
    fn drop(&mut self) {
        drop(self.permit.take());
        let Some(semaphore) = self.semaphore.take() else { return };
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Clones are made under this lock: two references (the map's and ours) mean nobody else
        // holds or waits for this namespace.
        if Arc::strong_count(&semaphore) == 2 {
            namespaces.remove(&self.name);
        }
    }
}

impl ReviewSlots {
    pub fn new(cores: usize) -> ReviewSlots {
        let cores = cores.max(1);
        ReviewSlots {
            all: Arc::new(Semaphore::new(cores)),
            per_namespace: cores.div_ceil(2),
            namespaces: Arc::default(),
        }
    }

    /// Waits for a slot for a review of an object in `namespace` ("" when cluster-scoped): first
    /// the namespace's share, then one of the cores. Dropping the future gives up both.
    pub async fn acquire(&self, namespace: &str) -> Result<Slot, tokio::sync::AcquireError> {
        let semaphore = {
            let mut namespaces = self.namespaces.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(
                namespaces.entry(namespace.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.per_namespace))),
            )
        };
        let mut hold = NamespaceHold {
            namespaces: Arc::clone(&self.namespaces),
            name: namespace.to_string(),
            semaphore: Some(Arc::clone(&semaphore)),
            permit: None,
        };
        hold.permit = Some(semaphore.acquire_owned().await?);
        let all = Arc::clone(&self.all).acquire_owned().await?;
        Ok(Slot { _all: all, _namespace: hold })
    }

    /// Namespaces with reviews running or waiting.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.namespaces.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_namespace_gets_half_the_cores_and_another_still_runs() {
        let slots = ReviewSlots::new(4);
        let a1 = slots.acquire("team-a").await.unwrap();
        let _a2 = slots.acquire("team-a").await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire("team-a")).await;
        assert!(third.is_err(), "a third review of team-a waits: two of four cores are its share");
        let _b = tokio::time::timeout(Duration::from_millis(50), slots.acquire("team-b")).await.expect("team-b runs");
        drop(a1);
        let _a3 = tokio::time::timeout(Duration::from_millis(50), slots.acquire("team-a")).await.expect("freed");
    }

    #[tokio::test]
    async fn all_cores_bound_the_total_and_namespaces_are_forgotten_when_idle() {
        let slots = ReviewSlots::new(2);
        let a = slots.acquire("a").await.unwrap();
        let b = slots.acquire("b").await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.acquire("c")).await.is_err(),
            "two cores, two running"
        );
        assert_eq!(slots.tracked(), 2, "the given-up wait for c left nothing behind");
        drop((a, b));
        for i in 0..100 {
            drop(slots.acquire(&format!("made-up-{i}")).await.unwrap());
        }
        assert_eq!(slots.tracked(), 0);
    }
}
