//! Admission control: how many instance processes run at once, and who waits.
//!
//! Every process the supervisor runs holds a slot, from before it is spawned (or adopted)
//! until it has been reaped. A launch that finds no free slot waits in one queue, first
//! come, first served; a slot that frees up goes to the first waiting launch that fits
//! (its tenant and image under their own limits, when those are set), so a tenant at its
//! limit does not hold up the others, and each tenant's launches keep their order.
//!
//! The queue lives in memory; what it holds is durable in the store (`pending`
//! instances, due wakes, crashed runs), and a restarted server queues it again in the
//! order of the starts (see `Supervisor::recover`).
//!
//! Pure bookkeeping, no I/O: the supervisor calls it under its lock and acts on the
//! answers.

use std::collections::{HashMap, VecDeque};

/// The capacity settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Instance processes running at once, in all.
    pub max_running: usize,
    /// At once per tenant, if limited.
    pub per_tenant: Option<usize>,
    /// At once per image, if limited.
    pub per_image: Option<usize>,
}

impl Limits {
    /// No limit but `max_running`.
    pub fn total(max_running: usize) -> Limits {
        Limits {
            max_running,
            per_tenant: None,
            per_image: None,
        }
    }
}

/// The capacity settings as the server takes them (flags and environment).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunLimits {
    /// Instance processes running at once; more starts wait, `pending`, first come first
    /// served (default: 32 per CPU, at least 16).
    #[arg(long, env = "RUNTARA_MAX_RUNNING", value_parser = at_least_one)]
    pub max_running: Option<usize>,
    /// Instance processes of one tenant running at once (default: no limit but
    /// `--max-running`).
    #[arg(long, env = "RUNTARA_MAX_RUNNING_PER_TENANT", value_parser = at_least_one)]
    pub max_running_per_tenant: Option<usize>,
    /// Instance processes of one image running at once (default: no limit but
    /// `--max-running`).
    #[arg(long, env = "RUNTARA_MAX_RUNNING_PER_IMAGE", value_parser = at_least_one)]
    pub max_running_per_image: Option<usize>,
}

/// A count of processes: a whole number, at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(error) => Err(error.to_string()),
    }
}

impl RunLimits {
    /// The limits in force.
    pub fn limits(&self) -> Limits {
        Limits {
            max_running: self.max_running.unwrap_or_else(default_max_running),
            per_tenant: self.max_running_per_tenant,
            per_image: self.max_running_per_image,
        }
    }
}

/// The default `--max-running`: 32 per CPU, at least 16.
pub fn default_max_running() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cpus * 32).max(16)
}

/// A launch that wants a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The instance.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its image.
    pub image_id: String,
    /// A resume asked for it (a suspended instance may be launched).
    pub resume: bool,
    /// Its start created it registered for this launch (`NewInstance::run_now`): the
    /// launch need not register it again.
    pub registered: bool,
}

impl Launch {
    /// The launch of a stored instance that runs an image (none for one that does not),
    /// not a resume and not registered ahead: what a starting server queues again.
    pub fn of_stored(instance: runtara_core::InstanceRecord) -> Option<Launch> {
        Some(Launch {
            image_id: instance.image_id?,
            instance_id: instance.instance_id,
            tenant_id: instance.tenant_id,
            resume: false,
            registered: false,
        })
    }
}

/// What [`Admission::offer`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// A slot was taken for it: launch now, and [`Admission::release`] the slot if no
    /// process comes of it.
    Now,
    /// It holds a slot already (its process is alive or being launched): launch now
    /// without taking or giving back a slot.
    Held,
    /// No room: it waits in the queue (or already waited there).
    Queued,
}

/// Where a waiting launch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// 1 for the next in line.
    pub position: usize,
    /// Launches waiting in all.
    pub waiting: usize,
}

#[derive(Debug, Clone)]
struct Holder {
    tenant_id: String,
    image_id: String,
    /// A run hosted by a worker pool (not a process of its own).
    pooled: bool,
}

/// Slots held and launches waiting.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    held: HashMap<String, Holder>,
    by_tenant: HashMap<String, usize>,
    by_image: HashMap<String, usize>,
    /// Images with a limit of their own (a worker pool's capacity), over `per_image`.
    image_limits: HashMap<String, usize>,
    queue: VecDeque<Launch>,
}

impl Admission {
    /// Nothing held, nothing waiting.
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits: Limits {
                max_running: limits.max_running.max(1),
                per_tenant: limits.per_tenant.map(|n| n.max(1)),
                per_image: limits.per_image.map(|n| n.max(1)),
            },
            held: HashMap::new(),
            by_tenant: HashMap::new(),
            by_image: HashMap::new(),
            image_limits: HashMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Slots held (processes and runs hosted by workers).
    pub fn running(&self) -> usize {
        self.held.len()
    }

    /// Slots held by instance processes of their own: what `max_running` bounds.
    fn processes(&self) -> usize {
        self.held.values().filter(|h| !h.pooled).count()
    }

    /// Launches waiting.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Asks for a slot for `launch`: taken now if there is room and no launch of its
    /// tenant waits before it, else queued (once; a launch already waiting keeps its
    /// place, and asks for a resume are merged into it).
    pub fn offer(&mut self, launch: Launch) -> Offer {
        if self.held.contains_key(&launch.instance_id) {
            return Offer::Held;
        }
        if let Some(waiting) = self
            .queue
            .iter_mut()
            .find(|w| w.instance_id == launch.instance_id)
        {
            waiting.resume |= launch.resume;
            return Offer::Queued;
        }
        let tenant_waits = self.queue.iter().any(|w| w.tenant_id == launch.tenant_id);
        if !tenant_waits && self.fits(&launch.tenant_id, &launch.image_id) {
            self.take(&launch.instance_id, &launch.tenant_id, &launch.image_id);
            Offer::Now
        } else {
            self.queue.push_back(launch);
            Offer::Queued
        }
    }

    /// Takes a slot for `launch` when one is free for it now and nothing of its tenant
    /// waits; otherwise takes nothing and queues nothing. What a start does before it
    /// creates its instance registered.
    pub fn reserve(&mut self, launch: &Launch) -> bool {
        let known = self.held.contains_key(&launch.instance_id)
            || self
                .queue
                .iter()
                .any(|w| w.instance_id == launch.instance_id);
        let tenant_waits = self.queue.iter().any(|w| w.tenant_id == launch.tenant_id);
        if known || tenant_waits || !self.fits(&launch.tenant_id, &launch.image_id) {
            return false;
        }
        self.take(&launch.instance_id, &launch.tenant_id, &launch.image_id);
        true
    }

    /// Takes a slot for a live process found running (adopted), whatever the limits:
    /// it runs already. False when it held one.
    pub fn hold(&mut self, instance_id: &str, tenant_id: &str, image_id: &str) -> bool {
        if self.held.contains_key(instance_id) {
            return false;
        }
        self.take(instance_id, tenant_id, image_id);
        true
    }

    /// Gives back `instance_id`'s slot, if it held one, and takes slots for the waiting
    /// launches that now fit, in order: launch each of them.
    pub fn release(&mut self, instance_id: &str) -> Vec<Launch> {
        if let Some(holder) = self.held.remove(instance_id) {
            decrement(&mut self.by_tenant, &holder.tenant_id);
            decrement(&mut self.by_image, &holder.image_id);
        }
        let mut admitted = Vec::new();
        let mut index = 0;
        let mut blocked_tenants: Vec<String> = Vec::new();
        while index < self.queue.len() {
            let waiting = &self.queue[index];
            let blocked = blocked_tenants.contains(&waiting.tenant_id);
            if !blocked && self.fits(&waiting.tenant_id, &waiting.image_id) {
                if let Some(launch) = self.queue.remove(index) {
                    self.take(&launch.instance_id, &launch.tenant_id, &launch.image_id);
                    admitted.push(launch);
                }
            } else {
                // Its tenant's later launches wait behind it.
                blocked_tenants.push(waiting.tenant_id.clone());
                index += 1;
            }
        }
        admitted
    }

    /// Sets (or with `None` clears) a limit of `image_id`'s own: the capacity of its
    /// worker pool. Returns the waiting launches a raised limit lets in: launch each.
    pub fn set_image_limit(&mut self, image_id: &str, limit: Option<usize>) -> Vec<Launch> {
        match limit {
            Some(limit) => self.image_limits.insert(image_id.to_owned(), limit.max(1)),
            None => self.image_limits.remove(image_id),
        };
        self.release("")
    }

    /// Takes a waiting launch out of the queue (a pause or a cancel before it ran).
    /// False when it was not waiting.
    pub fn withdraw(&mut self, instance_id: &str) -> bool {
        let before = self.queue.len();
        self.queue.retain(|w| w.instance_id != instance_id);
        self.queue.len() != before
    }

    /// Where `instance_id` waits, if it does.
    pub fn place(&self, instance_id: &str) -> Option<Place> {
        self.queue
            .iter()
            .position(|w| w.instance_id == instance_id)
            .map(|index| Place {
                position: index + 1,
                waiting: self.queue.len(),
            })
    }

    fn fits(&self, tenant_id: &str, image_id: &str) -> bool {
        let under = |limit: Option<usize>, counts: &HashMap<String, usize>, key: &str| {
            limit.is_none_or(|limit| counts.get(key).copied().unwrap_or(0) < limit)
        };
        // A worker pool bounds its image's runs; `max_running` bounds processes.
        let (per_image, room) = match self.image_limits.get(image_id) {
            Some(&own) => (Some(own), true),
            None => (
                self.limits.per_image,
                self.processes() < self.limits.max_running,
            ),
        };
        room && under(self.limits.per_tenant, &self.by_tenant, tenant_id)
            && under(per_image, &self.by_image, image_id)
    }

    fn take(&mut self, instance_id: &str, tenant_id: &str, image_id: &str) {
        let pooled = self.image_limits.contains_key(image_id);
        self.held.insert(
            instance_id.to_owned(),
            Holder {
                tenant_id: tenant_id.to_owned(),
                image_id: image_id.to_owned(),
                pooled,
            },
        );
        *self.by_tenant.entry(tenant_id.to_owned()).or_default() += 1;
        *self.by_image.entry(image_id.to_owned()).or_default() += 1;
    }
}

fn decrement(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn launch(id: &str, tenant: &str, image: &str) -> Launch {
        Launch {
            instance_id: id.into(),
            tenant_id: tenant.into(),
            image_id: image.into(),
            resume: false,
            registered: false,
        }
    }

    fn ids(launches: &[Launch]) -> Vec<&str> {
        launches.iter().map(|l| l.instance_id.as_str()).collect()
    }

    #[test]
    fn launches_beyond_the_limit_wait_and_run_in_order_as_slots_free_up() {
        let mut admission = Admission::new(Limits::total(2));
        assert_eq!(admission.offer(launch("a", "t", "i")), Offer::Now);
        assert_eq!(admission.offer(launch("b", "t", "i")), Offer::Now);
        for id in ["c", "d", "e"] {
            assert_eq!(admission.offer(launch(id, "t", "i")), Offer::Queued);
        }
        assert_eq!(admission.running(), 2);
        assert_eq!(
            admission.place("d"),
            Some(Place {
                position: 2,
                waiting: 3
            })
        );
        assert_eq!(ids(&admission.release("a")), ["c"]);
        assert_eq!(ids(&admission.release("b")), ["d"]);
        assert_eq!(ids(&admission.release("c")), ["e"]);
        assert!(admission.release("d").is_empty());
        assert_eq!(admission.running(), 1);
        assert_eq!(admission.place("e"), None);
    }

    #[test]
    fn a_reservation_takes_a_free_slot_or_nothing() {
        let mut admission = Admission::new(Limits::total(2));
        assert!(admission.reserve(&launch("a", "t", "i")));
        assert!(!admission.reserve(&launch("a", "t", "i")), "held already");
        assert!(admission.reserve(&launch("b", "t", "i")));
        // Full: nothing is taken and nothing queued.
        assert!(!admission.reserve(&launch("c", "t", "i")));
        assert_eq!((admission.running(), admission.waiting()), (2, 0));
        // A tenant with a launch waiting keeps its order: no reservation jumps it.
        assert_eq!(admission.offer(launch("d", "t", "i")), Offer::Queued);
        assert_eq!(ids(&admission.release("a")), ["d"]);
        assert!(admission.release("b").is_empty());
        assert!(admission.reserve(&launch("e", "t", "i")));
        assert_eq!(admission.running(), 2);
    }

    #[test]
    fn a_launch_that_holds_or_waits_is_not_counted_twice() {
        let mut admission = Admission::new(Limits::total(1));
        assert_eq!(admission.offer(launch("a", "t", "i")), Offer::Now);
        assert_eq!(admission.offer(launch("a", "t", "i")), Offer::Held);
        assert_eq!(admission.offer(launch("b", "t", "i")), Offer::Queued);
        let mut resumed = launch("b", "t", "i");
        resumed.resume = true;
        assert_eq!(admission.offer(resumed), Offer::Queued);
        assert_eq!(admission.waiting(), 1);
        let admitted = admission.release("a");
        assert_eq!(ids(&admitted), ["b"]);
        assert!(
            admitted[0].resume,
            "the resume was merged into the waiting launch"
        );
        // Releasing what holds nothing changes nothing.
        assert!(admission.release("nobody").is_empty());
        assert_eq!(admission.running(), 1);
    }

    #[test]
    fn a_tenant_at_its_limit_does_not_hold_up_others_and_keeps_its_order() {
        let mut admission = Admission::new(Limits {
            max_running: 3,
            per_tenant: Some(1),
            per_image: None,
        });
        assert_eq!(admission.offer(launch("a1", "a", "i")), Offer::Now);
        assert_eq!(admission.offer(launch("a2", "a", "i")), Offer::Queued);
        assert_eq!(admission.offer(launch("b1", "b", "i")), Offer::Now);
        assert_eq!(admission.offer(launch("a3", "a", "i")), Offer::Queued);
        assert_eq!(admission.offer(launch("c1", "c", "i")), Offer::Now);
        assert_eq!(admission.offer(launch("c2", "c", "i")), Offer::Queued);
        // b's slot frees: a and c are at their limit, nothing fits.
        assert!(admission.release("b1").is_empty());
        // a's frees: a2 (not a3) goes.
        assert_eq!(ids(&admission.release("a1")), ["a2"]);
        assert_eq!(ids(&admission.release("c1")), ["c2"]);
        assert_eq!(ids(&admission.release("a2")), ["a3"]);
    }

    #[test]
    fn an_image_at_its_limit_waits_while_other_images_run() {
        let mut admission = Admission::new(Limits {
            max_running: 10,
            per_tenant: None,
            per_image: Some(1),
        });
        assert_eq!(admission.offer(launch("x1", "t", "x")), Offer::Now);
        assert_eq!(admission.offer(launch("x2", "t", "x")), Offer::Queued);
        // The same tenant's launch of another image waits behind x2: a tenant's
        // launches keep their order.
        assert_eq!(admission.offer(launch("y1", "t", "y")), Offer::Queued);
        assert_eq!(admission.offer(launch("z1", "u", "z")), Offer::Now);
        assert_eq!(ids(&admission.release("x1")), ["x2", "y1"]);
    }

    #[test]
    fn runs_in_worker_pools_are_bounded_by_the_pool_not_by_max_running() {
        let mut admission = Admission::new(Limits::total(1));
        admission.set_image_limit("pool", Some(3));
        assert_eq!(admission.offer(launch("proc-1", "t", "plain")), Offer::Now);
        assert_eq!(
            admission.offer(launch("proc-2", "u", "plain")),
            Offer::Queued
        );
        for id in ["p1", "p2", "p3"] {
            assert_eq!(admission.offer(launch(id, "v", "pool")), Offer::Now);
        }
        assert_eq!(admission.offer(launch("p4", "v", "pool")), Offer::Queued);
        assert_eq!(admission.running(), 4);
        assert_eq!(ids(&admission.release("p1")), ["p4"]);
        assert_eq!(ids(&admission.release("proc-1")), ["proc-2"]);
    }

    #[test]
    fn a_worker_pool_limits_its_image_and_raising_it_lets_waiting_launches_in() {
        let mut admission = Admission::new(Limits::total(10));
        assert!(admission.set_image_limit("pool", Some(2)).is_empty());
        assert_eq!(admission.offer(launch("p1", "t", "pool")), Offer::Now);
        assert_eq!(admission.offer(launch("p2", "t", "pool")), Offer::Now);
        assert_eq!(admission.offer(launch("p3", "t", "pool")), Offer::Queued);
        assert_eq!(admission.offer(launch("q1", "u", "other")), Offer::Now);
        assert_eq!(ids(&admission.set_image_limit("pool", Some(3))), ["p3"]);
        assert_eq!(admission.offer(launch("p4", "t", "pool")), Offer::Queued);
        assert_eq!(ids(&admission.set_image_limit("pool", None)), ["p4"]);
    }

    #[test]
    fn adopted_processes_hold_slots_beyond_the_limit_and_withdrawn_launches_never_run() {
        let mut admission = Admission::new(Limits::total(1));
        assert!(admission.hold("old-1", "t", "i"));
        assert!(admission.hold("old-2", "t", "i"));
        assert!(!admission.hold("old-2", "t", "i"));
        assert_eq!(admission.offer(launch("new", "t", "i")), Offer::Queued);
        assert_eq!(admission.offer(launch("paused", "t", "i")), Offer::Queued);
        assert!(admission.withdraw("paused"));
        assert!(!admission.withdraw("paused"));
        assert!(
            admission.release("old-1").is_empty(),
            "still over the limit"
        );
        assert_eq!(ids(&admission.release("old-2")), ["new"]);
        assert!(admission.release("new").is_empty());
    }

    #[test]
    fn the_default_scales_with_the_machine() {
        assert!(default_max_running() >= 16);
    }

    #[test]
    fn a_limit_of_zero_is_refused_with_the_flag_named() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Flags {
            #[command(flatten)]
            limits: RunLimits,
        }
        let error = Flags::try_parse_from(["server", "--max-running", "0"]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("--max-running") && text.contains("at least 1"),
            "{text}"
        );
        let flags = Flags::try_parse_from(["server", "--max-running-per-tenant", "2"]).unwrap();
        assert_eq!(flags.limits.limits().per_tenant, Some(2));
        assert_eq!(flags.limits.limits().max_running, default_max_running());
    }
}
