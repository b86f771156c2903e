//! The plain HTTP request model the header rules decide on, and token-bucket arithmetic.
//!
//! Shared rate-limit state belongs to the host (Envoy shared data with compare-and-swap, a map
//! natively); policy-core only says how a bucket changes, through [`BucketStore`].

use serde::Deserialize;
use std::borrow::Cow;

/// One request as the rules see it. Header names are matched case-insensitively.
/// Fields borrow where the host lends its buffers (the Envoy filter decides on the header map
/// the proxy wrote into guest memory, without a copy per header) and own otherwise.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request<'a> {
    pub method: Cow<'a, str>,
    pub path: Cow<'a, str>,
    #[serde(default)]
    pub authority: Cow<'a, str>,
    #[serde(default, deserialize_with = "headers_from_map_or_pairs")]
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Request<'a> {
    /// A request from owned parts (tests, replays, native callers).
    pub fn owned(method: &str, path: &str, authority: &str, headers: &[(&str, &str)]) -> Request<'static> {
        Request {
            method: Cow::Owned(method.to_string()),
            path: Cow::Owned(path.to_string()),
            authority: Cow::Owned(authority.to_string()),
            headers: headers.iter().map(|(k, v)| (Cow::Owned(k.to_string()), Cow::Owned(v.to_string()))).collect(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        // Length first: most names differ in length, and that test inlines where the
        // case-insensitive compare (a call in size-optimized wasm) does not.
        self.headers
            .iter()
            .find(|(k, _)| k.len() == name.len() && k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(self.path.as_ref(), |(p, _)| p)
    }

    pub fn is_grpc(&self) -> bool {
        self.header("content-type").is_some_and(is_grpc_content_type)
    }
}

/// Whether a `content-type` value is gRPC's.
pub fn is_grpc_content_type(value: &str) -> bool {
    value.starts_with("application/grpc")
}

/// Slots for the request headers a rule set's HTTP rules read by name: given out when the rule set
/// compiles, filled once per decision in one pass over the request's headers ([`HeaderView`]), so
/// each rule reads its header by index instead of scanning the request for it. Reading eleven
/// rules' headers by scan was a third of a decision (callgrind, the Envoy benchmark's rule set).
#[derive(Debug, Default)]
pub(crate) struct HeaderSlots {
    /// Lower case, in slot order.
    names: Vec<String>,
    /// Each name's [`fingerprint`], in slot order.
    fingerprints: Vec<(u64, u64)>,
    /// `by_len[n]`: the slots of the names `n` bytes long, the last entry those of every longer
    /// name. A request header whose length no rule names is passed over after one lookup.
    by_len: Vec<Vec<usize>>,
}

/// Names of this many bytes and more share the last `by_len` entry.
const LONG_NAME: usize = 40;

impl HeaderSlots {
    /// The slot of `name` (any case), given out on first use.
    pub(crate) fn slot(&mut self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        if let Some(slot) = self.names.iter().position(|n| *n == name) {
            return slot;
        }
        if self.by_len.is_empty() {
            self.by_len = vec![Vec::new(); LONG_NAME + 1];
        }
        self.by_len[name.len().min(LONG_NAME)].push(self.names.len());
        self.fingerprints.push(fingerprint(&name));
        self.names.push(name);
        self.names.len() - 1
    }

    /// Each slot's header in `req`: the first of that name, as [`Request::header`] finds it.
    pub(crate) fn view<'r>(&self, req: &'r Request) -> HeaderView<'r> {
        let mut view = HeaderView::with_slots(self.names.len());
        if self.names.is_empty() {
            return view;
        }
        for (name, value) in &req.headers {
            let candidates = &self.by_len[name.len().min(LONG_NAME)];
            if candidates.is_empty() {
                continue;
            }
            let print = fingerprint(name);
            for &slot in candidates {
                let wanted = &self.names[slot];
                if self.fingerprints[slot] == print
                    && wanted.len() == name.len()
                    && (wanted.as_bytes() == name.as_bytes() || wanted.eq_ignore_ascii_case(name))
                {
                    view.fill(slot, value);
                    break;
                }
            }
        }
        view
    }
}

/// A header name's first and last 8 bytes (fewer for a shorter name), each byte with its 0x20
/// bit set: equal for names equal but for ASCII case, and almost always different otherwise, so
/// names of one length are told apart in two compares before any byte-by-byte one.
fn fingerprint(name: &str) -> (u64, u64) {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let bytes = name.as_bytes();
    match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head) | FOLD, u64::from_le_bytes(*tail) | FOLD),
        _ => {
            let mut word = [0u8; 8];
            word[..bytes.len()].copy_from_slice(bytes);
            let word = u64::from_le_bytes(word) | FOLD;
            (word, word)
        }
    }
}

/// Slots kept on the stack; a rule set naming more headers spills the rest to the heap.
const INLINE_SLOTS: usize = 16;

/// One request's headers by slot ([`HeaderSlots::view`]).
pub(crate) struct HeaderView<'r> {
    inline: [Option<&'r str>; INLINE_SLOTS],
    spilled: Vec<Option<&'r str>>,
}

impl<'r> HeaderView<'r> {
    fn with_slots(slots: usize) -> Self {
        HeaderView { inline: [None; INLINE_SLOTS], spilled: vec![None; slots.saturating_sub(INLINE_SLOTS)] }
    }

    fn fill(&mut self, slot: usize, value: &'r str) {
        let cell = match slot.checked_sub(INLINE_SLOTS) {
            None => &mut self.inline[slot],
            Some(i) => &mut self.spilled[i],
        };
        if cell.is_none() {
            *cell = Some(value);
        }
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&'r str> {
        match slot.checked_sub(INLINE_SLOTS) {
            None => self.inline[slot],
            Some(i) => self.spilled.get(i).copied().flatten(),
        }
    }
}

/// The request headers a rule set's HTTP rules read ([`crate::Policy::headers_read`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadersRead {
    /// Some rule reads every header (`http-header-limits`): hosts hand over the whole map.
    All,
    /// These headers only (lower case, sorted, each once), besides the method, path and
    /// authority (`:method`, `:path`, `:authority`, and `host` where `:authority` is missing).
    /// A host that builds the [`Request`] from the first value of each, as Envoy's
    /// by-name lookups answer, gets the decisions the whole map would get.
    Named(Vec<String>),
}

type HeaderPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

fn headers_from_map_or_pairs<'de, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<HeaderPairs<'a>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Map(std::collections::BTreeMap<String, String>),
        Pairs(Vec<(String, String)>),
    }
    let pairs: Vec<(String, String)> = match Headers::deserialize(d)? {
        Headers::Map(m) => m.into_iter().collect(),
        Headers::Pairs(p) => p,
    };
    Ok(pairs.into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect())
}

/// Envoy local_ratelimit's token bucket: `maxTokens`, refilled by `tokensPerFill` every `fillInterval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval_ms: u64,
}

/// A bucket's state as hosts store it: 12 bytes, see [`BucketState::to_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketState {
    pub tokens: u32,
    /// Time of the last whole refill step; refills are computed from elapsed time, not by a tick.
    pub last_fill_ms: u64,
}

impl BucketState {
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.tokens.to_le_bytes());
        b[4..].copy_from_slice(&self.last_fill_ms.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let tokens = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
        let last_fill_ms = u64::from_le_bytes(b.get(4..12)?.try_into().ok()?);
        Some(BucketState { tokens, last_fill_ms })
    }
}

/// A worker leases at most this share of a bucket (`maxTokens / LEASE_DIVISOR`) at a time...
pub const LEASE_DIVISOR: u32 = 64;
/// ...and never more than this many tokens.
pub const MAX_LEASE: u32 = 1024;

impl TokenBucket {
    /// Takes one token at `now_ms`: the new state and whether the request may pass.
    pub fn take(&self, state: Option<BucketState>, now_ms: u64) -> (BucketState, bool) {
        let (s, granted) = self.take_up_to(state, now_ms, 1);
        (s, granted == 1)
    }

    /// Refills for the time elapsed since the last refill, then takes up to `wanted` tokens:
    /// the new state and how many were granted (0 when the bucket is empty).
    pub fn take_up_to(&self, state: Option<BucketState>, now_ms: u64, wanted: u32) -> (BucketState, u32) {
        let mut s = state.unwrap_or(BucketState { tokens: self.max_tokens, last_fill_ms: now_ms });
        if now_ms > s.last_fill_ms && self.fill_interval_ms > 0 {
            let steps = (now_ms - s.last_fill_ms) / self.fill_interval_ms;
            if steps > 0 {
                let added = steps.saturating_mul(u64::from(self.tokens_per_fill));
                s.tokens = (u64::from(s.tokens).saturating_add(added)).min(u64::from(self.max_tokens)) as u32;
                s.last_fill_ms += steps * self.fill_interval_ms;
            }
        }
        let granted = s.tokens.min(wanted);
        s.tokens -= granted;
        (s, granted)
    }

    /// When a bucket in `state` is back to `max_tokens`, counting whole refills from its last
    /// one; `u64::MAX` for a bucket that never refills.
    pub fn full_at_ms(&self, state: BucketState) -> u64 {
        if state.tokens >= self.max_tokens {
            return state.last_fill_ms;
        }
        if self.tokens_per_fill == 0 || self.fill_interval_ms == 0 {
            return u64::MAX;
        }
        let steps = u64::from((self.max_tokens - state.tokens).div_ceil(self.tokens_per_fill));
        state.last_fill_ms.saturating_add(steps.saturating_mul(self.fill_interval_ms))
    }

    /// How many tokens a worker takes from the shared bucket at once (see [`LeasedBuckets`]):
    /// 1 below 128 tokens, so small buckets stay exact; at most 1/64 of the bucket and 1024.
    pub fn lease_size(&self) -> u32 {
        (self.max_tokens / LEASE_DIVISOR).clamp(1, MAX_LEASE)
    }
}

/// Where a decision reads the time. Only a rate limit that must go to its shared bucket asks,
/// once per request at most, so a host whose clock is a host call pays for it only then.
pub trait Clock {
    fn now_ms(&mut self) -> Result<u64, String>;
}

/// A fixed time: tests, replays, native callers that already read the clock.
impl Clock for u64 {
    fn now_ms(&mut self) -> Result<u64, String> {
        Ok(*self)
    }
}

/// A clock read through a host call, at most once.
pub struct HostClock<F: FnMut() -> Result<u64, String>> {
    read: F,
    now: Option<u64>,
}

impl<F: FnMut() -> Result<u64, String>> HostClock<F> {
    pub fn new(read: F) -> Self {
        HostClock { read, now: None }
    }
}

impl<F: FnMut() -> Result<u64, String>> Clock for HostClock<F> {
    fn now_ms(&mut self) -> Result<u64, String> {
        match self.now {
            Some(now) => Ok(now),
            None => {
                let now = (self.read)()?;
                self.now = Some(now);
                Ok(now)
            }
        }
    }
}

/// Which bucket a request draws from: one per rate-limit rule and key value.
#[derive(Clone, Copy, Debug)]
pub struct BucketKey<'a> {
    pub rule: &'a str,
    pub value: &'a str,
}

impl BucketKey<'_> {
    /// The key under which hosts share this bucket (Envoy shared data). A rule id cannot hold
    /// `:`, so the first `:` ends it: rule `rl.shop` and rule `rl` with value `shop.` name two
    /// buckets, where joining both parts with `.` named one, letting a client drain another
    /// rule's bucket by the header value it sends.
    pub fn shared_name(&self) -> String {
        let mut name = String::new();
        self.write_shared_name(&mut name);
        name
    }

    /// [`BucketKey::shared_name`] into `out`, replacing what it held.
    pub fn write_shared_name(&self, out: &mut String) {
        out.clear();
        out.push_str("meshguard.rl.");
        out.push_str(self.rule);
        out.push(':');
        out.push_str(self.value);
    }
}

/// Rate-limit state as a decision sees it: take one token from a bucket.
pub trait BucketStore {
    fn take(&mut self, key: BucketKey<'_>, bucket: &TokenBucket, clock: &mut dyn Clock) -> Result<bool, String>;
}

/// Bucket storage shared by every worker of a proxy. `update` must apply `step` atomically per
/// key (retrying on a compare-and-swap conflict, say) and return the `bool` the accepted step
/// produced.
/// `bucket` and `now_ms` are what `step` applies, for a store that must tell when a bucket it
/// holds has refilled ([`TokenBucket::full_at_ms`]).
pub trait SharedBuckets {
    fn update(
        &mut self,
        key: &str,
        bucket: &TokenBucket,
        now_ms: u64,
        step: &mut dyn FnMut(Option<BucketState>) -> (BucketState, bool),
    ) -> Result<bool, String>;
}

/// Most buckets a [`MemoryBuckets`] holds, and most bytes their names take (a name holds the
/// key's value, a header a client writes): a client inventing a value per request cannot grow
/// the store past them.
pub const MAX_MEMORY_BUCKETS: usize = 100_000;
pub const MAX_MEMORY_BUCKET_NAME_BYTES: usize = 16 << 20;

/// After a sweep that left the store over three quarters full, new keys are refused without
/// another sweep for this long: a sweep walks every bucket, and one per request would be a
/// denial of service of its own.
pub const MEMORY_SWEEP_BACKOFF_MS: u64 = 1_000;

/// Buckets in a plain map, for native hosts and tests: exact, one token per update. Bounded by
/// [`MAX_MEMORY_BUCKETS`] and [`MAX_MEMORY_BUCKET_NAME_BYTES`]: when full, the buckets that have
/// refilled are dropped (a full bucket answers as a new one would, so no decision changes but
/// the timing of the next refill, by under one fill interval), and when none has, a new key is
/// an error, which the host answers by its failure policy.
#[derive(Default, Debug)]
pub struct MemoryBuckets {
    buckets: std::collections::HashMap<String, HeldBucket>,
    /// The last bucket name looked up, its buffer reused for the next: no allocation per request.
    name: String,
    name_bytes: usize,
    no_sweep_until_ms: u64,
}

#[derive(Debug)]
struct HeldBucket {
    state: BucketState,
    full_at_ms: u64,
}

impl MemoryBuckets {
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn fits(&self, name_len: usize, share: usize) -> bool {
        self.buckets.len() < MAX_MEMORY_BUCKETS * share / 4
            && self.name_bytes + name_len <= MAX_MEMORY_BUCKET_NAME_BYTES * share / 4
    }

    /// Room for one more bucket named with `name_len` bytes, sweeping refilled buckets if need be.
    fn make_room(&mut self, name_len: usize, now_ms: u64) -> Result<(), String> {
        if self.fits(name_len, 4) {
            return Ok(());
        }
        if now_ms >= self.no_sweep_until_ms {
            let mut freed = 0;
            self.buckets.retain(|name, held| {
                let keep = held.full_at_ms > now_ms;
                if !keep {
                    freed += name.len();
                }
                keep
            });
            self.name_bytes -= freed;
            self.no_sweep_until_ms = if self.fits(name_len, 3) { 0 } else { now_ms + MEMORY_SWEEP_BACKOFF_MS };
            if self.fits(name_len, 4) {
                return Ok(());
            }
        }
        Err(format!(
            "the rate-limit store is full: {} buckets hold {} bytes of names (at most {MAX_MEMORY_BUCKETS} and \
             {MAX_MEMORY_BUCKET_NAME_BYTES}), none refilled; a new key is not counted",
            self.buckets.len(),
            self.name_bytes
        ))
    }
}

impl SharedBuckets for MemoryBuckets {
    fn update(
        &mut self,
        key: &str,
        bucket: &TokenBucket,
        now_ms: u64,
        step: &mut dyn FnMut(Option<BucketState>) -> (BucketState, bool),
    ) -> Result<bool, String> {
        // An existing bucket is updated in place: no key copy, one hash.
        if let Some(held) = self.buckets.get_mut(key) {
            let (next, allowed) = step(Some(held.state));
            *held = HeldBucket { state: next, full_at_ms: bucket.full_at_ms(next) };
            return Ok(allowed);
        }
        self.make_room(key.len(), now_ms)?;
        let (next, allowed) = step(None);
        self.name_bytes += key.len();
        self.buckets.insert(key.to_string(), HeldBucket { state: next, full_at_ms: bucket.full_at_ms(next) });
        Ok(allowed)
    }
}

impl BucketStore for MemoryBuckets {
    fn take(&mut self, key: BucketKey<'_>, bucket: &TokenBucket, clock: &mut dyn Clock) -> Result<bool, String> {
        let now = clock.now_ms()?;
        let mut name = std::mem::take(&mut self.name);
        key.write_shared_name(&mut name);
        let taken = self.update(&name, bucket, now, &mut |state| bucket.take(state, now));
        self.name = name;
        taken
    }
}

/// A store of byte values shared by a proxy's workers, such as Envoy's shared data: kept for
/// the proxy's life once set (it has no delete), updated with compare-and-swap.
pub trait RawSharedData {
    /// The value under `key` and its compare-and-swap token (0 when there is none).
    fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, u32), String>;
    /// Stores `value` under `key` if its token is still `cas` (0: whatever it is); `Ok(false)`
    /// when another worker changed it first.
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, String>;
    /// Eight random bytes from the host, for [`SlottedBuckets`]'s seed.
    fn random_u64(&mut self) -> Result<u64, String>;
}

/// Slots a [`SlottedBuckets`] store spreads its keys over: the most names it ever writes, about
/// 100 bytes of Envoy memory each.
pub const SHARED_SLOTS: u64 = 65_536;
/// Slots a key tries, from its own on, before its update is refused.
pub const SLOT_PROBES: u64 = 8;
/// Where the seed that every worker hashes keys with is kept.
pub const SLOT_SEED_KEY: &str = "meshguard.rl.seed";

/// Rate-limit buckets in a store that keeps every key it is given ([`RawSharedData`]): a bucket
/// named after a header value a client writes would grow it by a name per invented value. So
/// keys are hashed, with a seed drawn once per proxy and kept in the store, to one of
/// [`SHARED_SLOTS`] slot names. A slot holds its key's fingerprint, the time its bucket is full
/// again and the bucket. A key takes over a slot whose bucket has refilled (no decision changes:
/// a full bucket answers as a new one), else tries the next, up to [`SLOT_PROBES`]; when all hold
/// other keys' active buckets, the update is an error, answered by the failure policy. The seed
/// is secret to the proxy, so a client cannot pick values that land on another tenant's slots.
#[derive(Debug)]
pub struct SlottedBuckets<R> {
    raw: R,
    slots: u64,
    seed: Option<u64>,
}

impl<R: RawSharedData> SlottedBuckets<R> {
    pub fn new(raw: R) -> Self {
        Self::with_slots(raw, SHARED_SLOTS)
    }

    pub fn with_slots(raw: R, slots: u64) -> Self {
        SlottedBuckets { raw, slots: slots.max(1), seed: None }
    }

    /// The proxy's seed: the one in the store, else a new one put there. A host calls this when
    /// it configures, so the first worker (Envoy's main thread) draws it before any other looks.
    pub fn seed(&mut self) -> Result<u64, String> {
        if let Some(seed) = self.seed {
            return Ok(seed);
        }
        let stored = |raw: &mut R| -> Result<Option<u64>, String> {
            Ok(raw.get(SLOT_SEED_KEY)?.0.and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))))
        };
        let seed = match stored(&mut self.raw)? {
            Some(seed) => seed,
            None => {
                let drawn = self.raw.random_u64()?;
                self.raw.set(SLOT_SEED_KEY, &drawn.to_le_bytes(), 0)?;
                // Another worker may have put its own there first: every worker uses what is stored.
                stored(&mut self.raw)?.unwrap_or(drawn)
            }
        };
        self.seed = Some(seed);
        Ok(seed)
    }

    /// Where `key`'s run of slots starts, and the fingerprint that tells its slot from others'
    /// (never 0).
    fn home_and_fingerprint(&mut self, key: &str) -> Result<(u64, u64), String> {
        use std::hash::{BuildHasher, Hasher};
        let seed = self.seed()?;
        let hash = |salt: u64| {
            let mut h = foldhash::quality::FixedState::with_seed(seed ^ salt).build_hasher();
            h.write(key.as_bytes());
            h.finish()
        };
        Ok((hash(0) % self.slots, hash(0x9e37_79b9_7f4a_7c15) | 1))
    }
}

/// A slot's value: 28 bytes.
struct Slot {
    fingerprint: u64,
    full_at_ms: u64,
    state: BucketState,
}

impl Slot {
    fn to_bytes(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..8].copy_from_slice(&self.fingerprint.to_le_bytes());
        b[8..16].copy_from_slice(&self.full_at_ms.to_le_bytes());
        b[16..].copy_from_slice(&self.state.to_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(Slot {
            fingerprint: u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            full_at_ms: u64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
            state: BucketState::from_bytes(b.get(16..)?)?,
        })
    }
}

impl<R: RawSharedData> SharedBuckets for SlottedBuckets<R> {
    fn update(
        &mut self,
        key: &str,
        bucket: &TokenBucket,
        now_ms: u64,
        step: &mut dyn FnMut(Option<BucketState>) -> (BucketState, bool),
    ) -> Result<bool, String> {
        let (home, fingerprint) = self.home_and_fingerprint(key)?;
        let slots = self.slots;
        let slot_name = |probe: u64| format!("meshguard.rl#{}", home.wrapping_add(probe) % slots);
        for _ in 0..32 {
            // The key's own slot, else the first it may take. Slots are never emptied, so one
            // never used ends the key's run; a refilled slot is taken only when the key holds
            // none further on, or the key would start a second, full bucket beside its own.
            let (mut own, mut free) = (None, None);
            for probe in 0..SLOT_PROBES.min(slots) {
                let name = slot_name(probe);
                let (data, cas) = self.raw.get(&name)?;
                let never_used = data.is_none();
                match data.as_deref().and_then(Slot::from_bytes) {
                    Some(held) if held.fingerprint == fingerprint => {
                        own = Some((name, cas, held.state));
                        break;
                    }
                    Some(held) if held.full_at_ms > now_ms => continue,
                    _ => {
                        free = free.or(Some((name, cas)));
                        if never_used {
                            break;
                        }
                    }
                }
            }
            let (name, cas, state) = match (own, free) {
                (Some((name, cas, state)), _) => (name, cas, Some(state)),
                (None, Some((name, cas))) => (name, cas, None),
                (None, None) => {
                    return Err(format!(
                        "every rate-limit slot this key may use ({SLOT_PROBES} of {slots}) holds another key's bucket \
                         that has not refilled; the request is not counted"
                    ))
                }
            };
            let (next, allowed) = step(state);
            let slot = Slot { fingerprint, full_at_ms: bucket.full_at_ms(next), state: next };
            if self.raw.set(&name, &slot.to_bytes(), cas)? {
                return Ok(allowed);
            }
        }
        Err(format!("the rate-limit slots of {key} stayed contended"))
    }
}

/// One rate-limit rule's leases on one worker: key value -> tokens left. foldhash instead of
/// SipHash: its lookup is on every limited request, and the table holds at most
/// [`MAX_LEASED_KEYS`] entries, which bounds what colliding keys could cost.
type LeaseTable = std::collections::HashMap<String, u32, foldhash::fast::RandomState>;

/// Most (rule, key) leases one worker keeps; past it the table is emptied, which only ever
/// admits less (unused leased tokens are dropped), so distinct header values cannot grow it.
pub const MAX_LEASED_KEYS: usize = 4096;

/// One worker's view of shared buckets: it takes [`TokenBucket::lease_size`] tokens from the
/// shared bucket at once and spends them locally, so most requests touch neither the shared
/// store nor the clock.
///
/// Accuracy: tokens are never created, so over any span of time a key admits at most what its
/// bucket granted; but a token leased before a refill may be spent after it, so within one fill
/// interval a key may admit up to `workers x (lease_size - 1)` more than `maxTokens`, and a
/// worker's unspent lease (at most `lease_size - 1`) is unavailable to the others. Buckets under
/// 128 tokens lease one token at a time and are exact.
#[derive(Debug, Default)]
pub struct LeasedBuckets<S> {
    shared: S,
    /// Per rate-limit rule (a RuleSet has a few, so a list, found by a compare instead of a
    /// second hash per request): key value -> tokens this worker may still spend.
    leases: Vec<(String, LeaseTable)>,
    leased_keys: usize,
}

impl<S: SharedBuckets> LeasedBuckets<S> {
    pub fn new(shared: S) -> Self {
        LeasedBuckets { shared, leases: Default::default(), leased_keys: 0 }
    }

    fn rule_leases(&mut self, rule: &str) -> Option<&mut LeaseTable> {
        self.leases.iter_mut().find(|(r, _)| r == rule).map(|(_, keys)| keys)
    }

    fn lease(&mut self, key: BucketKey<'_>, tokens: u32) {
        if self.leased_keys >= MAX_LEASED_KEYS {
            self.leases.clear();
            self.leased_keys = 0;
        }
        if self.rule_leases(key.rule).is_none() {
            self.leases.push((key.rule.to_string(), Default::default()));
        }
        let added = self.rule_leases(key.rule).is_some_and(|keys| keys.insert(key.value.to_string(), tokens).is_none());
        if added {
            self.leased_keys += 1;
        }
    }
}

impl<S: SharedBuckets> BucketStore for LeasedBuckets<S> {
    fn take(&mut self, key: BucketKey<'_>, bucket: &TokenBucket, clock: &mut dyn Clock) -> Result<bool, String> {
        if let Some(left) = self.rule_leases(key.rule).and_then(|r| r.get_mut(key.value)) {
            if *left > 0 {
                *left -= 1;
                return Ok(true);
            }
        }
        let now = clock.now_ms()?;
        let wanted = bucket.lease_size();
        let mut granted = 0;
        self.shared.update(&key.shared_name(), bucket, now, &mut |state| {
            let (next, n) = bucket.take_up_to(state, now, wanted);
            granted = n;
            (next, n > 0)
        })?;
        if granted == 0 {
            return Ok(false);
        }
        if granted > 1 || self.rule_leases(key.rule).is_some_and(|r| r.contains_key(key.value)) {
            self.lease(key, granted - 1);
        }
        Ok(true)
    }
}

/// Parses an Envoy-style duration (`500ms`, `1s`, `2m`, `1h`) into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration like `500ms`, `1s`, `1m`"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{text}` has no unit: use ms, s, m or h")),
    };
    // A wrapped product would turn a huge interval into a tiny one: a far looser rate limit.
    n.checked_mul(scale)
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| format!("`{text}` is longer than the largest duration meshguard takes (365 days)"))
}

/// The longest duration a RuleSet may name: a year; longer is a typo, not a rate limit.
pub const MAX_DURATION_MS: u64 = 365 * 24 * 3_600_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_keep_rule_and_value_apart() {
        let a = BucketKey { rule: "rl.shop", value: "" };
        let b = BucketKey { rule: "rl", value: "shop." };
        assert_ne!(a.shared_name(), b.shared_name());
        assert_eq!(BucketKey { rule: "rate", value: "shop" }.shared_name(), "meshguard.rl.rate:shop");
        // Both rules draw on their own bucket in one store.
        let bucket = TokenBucket { max_tokens: 1, tokens_per_fill: 1, fill_interval_ms: 1000 };
        let mut store = MemoryBuckets::default();
        assert!(store.take(a, &bucket, &mut 0).unwrap());
        assert!(store.take(b, &bucket, &mut 0).unwrap(), "a value that spells another rule's name is its own bucket");
        assert!(!store.take(a, &bucket, &mut 0).unwrap());
    }

    #[test]
    fn a_full_bucket_is_when_its_missing_tokens_have_refilled() {
        let b = TokenBucket { max_tokens: 10, tokens_per_fill: 3, fill_interval_ms: 100 };
        assert_eq!(b.full_at_ms(BucketState { tokens: 10, last_fill_ms: 50 }), 50);
        // 7 missing at 3 per fill: 3 fills.
        assert_eq!(b.full_at_ms(BucketState { tokens: 3, last_fill_ms: 1_000 }), 1_300);
        let (state, _) = b.take_up_to(Some(BucketState { tokens: 3, last_fill_ms: 1_000 }), 1_300, 0);
        assert_eq!(state.tokens, 10, "full when full_at_ms says so");
        let never = TokenBucket { max_tokens: 10, tokens_per_fill: 0, fill_interval_ms: 100 };
        assert_eq!(never.full_at_ms(BucketState { tokens: 9, last_fill_ms: 0 }), u64::MAX);
    }

    /// A client inventing a key value per request: the store stays at its bound, drops only
    /// buckets that have refilled, refuses new keys while none has, and sweeps at most once per
    /// backoff while it stays full.
    #[test]
    fn memory_buckets_stay_bounded_by_invented_keys() {
        let bucket = TokenBucket { max_tokens: 5, tokens_per_fill: 5, fill_interval_ms: 1_000 };
        let mut store = MemoryBuckets::default();
        let key = |i: usize| format!("tenant-{i}");
        for i in 0..MAX_MEMORY_BUCKETS {
            assert!(store.take(BucketKey { rule: "rl", value: &key(i) }, &bucket, &mut 0).unwrap());
        }
        assert_eq!(store.len(), MAX_MEMORY_BUCKETS);
        // Within the fill interval every bucket is short a token: a new key is refused...
        let refused = store.take(BucketKey { rule: "rl", value: "new" }, &bucket, &mut 500).unwrap_err();
        assert!(refused.contains("the rate-limit store is full"), "{refused}");
        // ...and a known one is still counted.
        assert!(store.take(BucketKey { rule: "rl", value: &key(7) }, &bucket, &mut 600).unwrap());
        // The refused sweep backs off: still refused past the refill, until the backoff ends.
        assert!(store.take(BucketKey { rule: "rl", value: "new" }, &bucket, &mut 1_200).is_err());
        // Then the refilled buckets go (key 7, drawn on at 600, refills at 1,000 too).
        assert!(store.take(BucketKey { rule: "rl", value: "new" }, &bucket, &mut 1_500).unwrap());
        assert_eq!(store.len(), 1);
        // A bucket dropped full answers as a new one: five tokens.
        for _ in 0..5 {
            assert!(store.take(BucketKey { rule: "rl", value: &key(3) }, &bucket, &mut 1_600).unwrap());
        }
        assert!(!store.take(BucketKey { rule: "rl", value: &key(3) }, &bucket, &mut 1_600).unwrap());
    }

    #[test]
    fn memory_buckets_bound_the_bytes_of_their_names() {
        let bucket = TokenBucket { max_tokens: 5, tokens_per_fill: 5, fill_interval_ms: 1_000 };
        let mut store = MemoryBuckets::default();
        let long = "v".repeat(64 << 10);
        let fit = MAX_MEMORY_BUCKET_NAME_BYTES / (long.len() + "meshguard.rl.rl:".len() + 8);
        let mut refused = None;
        for i in 0..fit + 2 {
            let value = format!("{long}{i:08}");
            if let Err(e) = store.take(BucketKey { rule: "rl", value: &value }, &bucket, &mut 0) {
                refused = Some((i, e));
                break;
            }
        }
        let (at, e) = refused.expect("a store of 64 KiB names is refused before its byte bound");
        assert!(at >= fit - 1 && e.contains("bytes of names"), "refused at {at} of {fit}: {e}");
    }

    /// Envoy's shared data as its host keeps it: values with compare-and-swap tokens, never deleted.
    #[derive(Clone, Default)]
    struct FakeSharedData(std::rc::Rc<std::cell::RefCell<(Values, u64)>>);

    /// Name -> value and its compare-and-swap token.
    type Values = std::collections::HashMap<String, (Vec<u8>, u32)>;

    impl RawSharedData for FakeSharedData {
        fn get(&mut self, key: &str) -> Result<(Option<Vec<u8>>, u32), String> {
            Ok(self.0.borrow().0.get(key).map_or((None, 0), |(v, cas)| (Some(v.clone()), *cas)))
        }

        fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, String> {
            let mut inner = self.0.borrow_mut();
            let current = inner.0.get(key).map_or(0, |(_, c)| *c);
            if cas != 0 && cas != current {
                return Ok(false);
            }
            inner.0.insert(key.to_string(), (value.to_vec(), current + 1));
            Ok(true)
        }

        fn random_u64(&mut self) -> Result<u64, String> {
            let mut inner = self.0.borrow_mut();
            inner.1 += 1;
            Ok(0x1234_5678 * inner.1)
        }
    }

    fn slotted_take(
        store: &mut SlottedBuckets<FakeSharedData>,
        bucket: &TokenBucket,
        key: &str,
        now: u64,
    ) -> Result<bool, String> {
        store.update(key, bucket, now, &mut |state| bucket.take(state, now))
    }

    /// A client inventing a key value per request adds no names past the slots, while keys in
    /// use keep their own buckets.
    #[test]
    fn slotted_buckets_keep_the_shared_store_to_its_slots() {
        let bucket = TokenBucket { max_tokens: 3, tokens_per_fill: 3, fill_interval_ms: 1_000 };
        let raw = FakeSharedData::default();
        let mut store = SlottedBuckets::with_slots(raw.clone(), 64);
        for i in 0..10_000 {
            // A thousand a second: each second's invented keys find the last second's refilled.
            let _ = slotted_take(&mut store, &bucket, &format!("meshguard.rl.rl:{i}"), i);
        }
        let names = raw.0.borrow().0.len();
        assert!(names <= 64 + 1, "{names} names for 64 slots and the seed");
        // A key in use is exact: three tokens, then none, until it refills.
        let now = 20_000;
        for _ in 0..3 {
            assert_eq!(slotted_take(&mut store, &bucket, "meshguard.rl.rl:shop", now), Ok(true));
        }
        assert_eq!(slotted_take(&mut store, &bucket, "meshguard.rl.rl:shop", now), Ok(false));
        assert_eq!(slotted_take(&mut store, &bucket, "meshguard.rl.rl:shop", now + 1_000), Ok(true));
    }

    /// Slots that all hold active buckets refuse a new key (the failure policy answers), and
    /// take it once one has refilled; a key in a slot is never handed another key's bucket.
    #[test]
    fn slotted_buckets_refuse_when_every_probed_slot_is_active() {
        let bucket = TokenBucket { max_tokens: 2, tokens_per_fill: 2, fill_interval_ms: 1_000 };
        let mut store = SlottedBuckets::with_slots(FakeSharedData::default(), SLOT_PROBES);
        for i in 0..SLOT_PROBES {
            assert_eq!(slotted_take(&mut store, &bucket, &format!("k{i}"), 0), Ok(true), "key {i}");
        }
        let refused = slotted_take(&mut store, &bucket, "late", 10).unwrap_err();
        assert!(refused.contains("holds another key's bucket that has not refilled"), "{refused}");
        // Each earlier key still has its own second token.
        for i in 0..SLOT_PROBES {
            assert_eq!(slotted_take(&mut store, &bucket, &format!("k{i}"), 20), Ok(true), "key {i}");
            assert_eq!(slotted_take(&mut store, &bucket, &format!("k{i}"), 20), Ok(false), "key {i}");
        }
        // After a refill the late key takes over a slot, as a new bucket: two tokens.
        assert_eq!(slotted_take(&mut store, &bucket, "late", 1_000), Ok(true));
        assert_eq!(slotted_take(&mut store, &bucket, "late", 1_000), Ok(true));
        assert_eq!(slotted_take(&mut store, &bucket, "late", 1_000), Ok(false));
    }

    /// A key pushed past its first slot keeps its own bucket when that first slot frees up,
    /// rather than starting a second, full one there.
    #[test]
    fn a_key_keeps_its_slot_when_an_earlier_one_refills() {
        let bucket = TokenBucket { max_tokens: 2, tokens_per_fill: 2, fill_interval_ms: 1_000 };
        let mut store = SlottedBuckets::with_slots(FakeSharedData::default(), 2);
        // Two keys starting their runs at the same slot.
        let home = |store: &mut SlottedBuckets<FakeSharedData>, k: &str| store.home_and_fingerprint(k).unwrap().0;
        let first = home(&mut store, "k0");
        let other = (1..).map(|i| format!("k{i}")).find(|k| home(&mut store, k) == first).unwrap();
        assert_eq!(slotted_take(&mut store, &bucket, "k0", 0), Ok(true));
        // `other` lands on the second slot, and spends its two tokens.
        assert_eq!(slotted_take(&mut store, &bucket, &other, 500), Ok(true));
        assert_eq!(slotted_take(&mut store, &bucket, &other, 500), Ok(true));
        // At 1,200 k0's bucket has refilled, `other`'s (until 1,500) has not: still none.
        assert_eq!(slotted_take(&mut store, &bucket, &other, 1_200), Ok(false));
        assert_eq!(slotted_take(&mut store, &bucket, &other, 1_500), Ok(true));
    }

    /// Workers share one seed (the first drawn), so they hash a key to the same slot and draw
    /// on one bucket.
    #[test]
    fn workers_agree_on_the_seed_and_share_buckets() {
        let bucket = TokenBucket { max_tokens: 4, tokens_per_fill: 4, fill_interval_ms: 1_000 };
        let raw = FakeSharedData::default();
        let (mut a, mut b) = (SlottedBuckets::new(raw.clone()), SlottedBuckets::new(raw.clone()));
        assert_eq!(a.seed(), b.seed());
        assert_eq!(raw.0.borrow().1, 1, "one seed drawn");
        for i in 0..4 {
            let worker = if i % 2 == 0 { &mut a } else { &mut b };
            assert_eq!(slotted_take(worker, &bucket, "meshguard.rl.rl:shop", 5), Ok(true));
        }
        assert_eq!(slotted_take(&mut a, &bucket, "meshguard.rl.rl:shop", 5), Ok(false));
        assert_eq!(slotted_take(&mut b, &bucket, "meshguard.rl.rl:shop", 5), Ok(false));
    }

    #[test]
    fn a_header_view_finds_what_a_scan_of_the_request_finds() {
        let long = "x-a-header-name-longer-than-the-length-table-holds";
        let mut slots = HeaderSlots::default();
        let mut names: Vec<String> =
            ["content-type", "X-Tenant", "x-tenanT", "te", long, "x-missing"].map(String::from).to_vec();
        // Past the inline slots, into the spilled ones.
        names.extend((0..20).map(|i| format!("x-extra-{i}")));
        let given: Vec<usize> = names.iter().map(|n| slots.slot(n)).collect();
        assert_eq!(given[1], given[2], "one slot per name, whatever its case");
        let mut headers = vec![
            ("X-TENANT", "shop"),
            ("x-tenant", "ads"),
            ("Content-Type", "application/grpc"),
            ("tE", "trailers"),
            (long, "first"),
            ("X-A-HEADER-NAME-LONGER-THAN-THE-LENGTH-TABLE-HOLDS", "second"),
            ("x-tenanu", "near miss"),
        ];
        let extra: Vec<String> = (0..20).rev().map(|i| format!("X-Extra-{i}")).collect();
        headers.extend(extra.iter().map(|n| (n.as_str(), "v")));
        let req = Request::owned("GET", "/", "a", &headers);
        let view = slots.view(&req);
        for (name, slot) in names.iter().zip(given) {
            assert_eq!(view.get(slot), req.header(name), "{name}");
        }
        assert_eq!(view.get(slots.slot("x-tenant")), Some("shop"), "the first of two, as the scan finds it");
        assert_eq!(view.get(slots.slot("x-extra-19")), Some("v"));
        assert_eq!(view.get(slots.slot("x-missing")), None);
    }

    #[test]
    fn bucket_refills_from_elapsed_time() {
        let b = TokenBucket { max_tokens: 2, tokens_per_fill: 1, fill_interval_ms: 1000 };
        let (s, ok) = b.take(None, 10_000);
        assert!(ok);
        let (s, ok) = b.take(Some(s), 10_100);
        assert!(ok && s.tokens == 0);
        let (s, ok) = b.take(Some(s), 10_900);
        assert!(!ok, "no refill before one interval");
        let (s, ok) = b.take(Some(s), 11_000);
        assert!(ok && s.tokens == 0 && s.last_fill_ms == 11_000);
        let (s, _) = b.take(Some(s), 99_000);
        assert_eq!(s.tokens, 1, "refill is capped at maxTokens");
        assert_eq!(BucketState::from_bytes(&s.to_bytes()), Some(s));
    }

    /// Two workers sharing one store, as Envoy's worker threads share shared data.
    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<(MemoryBuckets, usize)>>);

    impl SharedBuckets for Shared {
        fn update(
            &mut self,
            key: &str,
            bucket: &TokenBucket,
            now_ms: u64,
            step: &mut dyn FnMut(Option<BucketState>) -> (BucketState, bool),
        ) -> Result<bool, String> {
            let mut inner = self.0.borrow_mut();
            inner.1 += 1;
            inner.0.update(key, bucket, now_ms, step)
        }
    }

    fn take(w: &mut LeasedBuckets<Shared>, b: &TokenBucket, value: &str, now: u64) -> bool {
        w.take(BucketKey { rule: "rate", value }, b, &mut { now }).unwrap()
    }

    #[test]
    fn leases_spend_exactly_the_bucket_with_few_shared_updates() {
        let b = TokenBucket { max_tokens: 6400, tokens_per_fill: 6400, fill_interval_ms: 1000 };
        assert_eq!(b.lease_size(), 100);
        let store = Shared::default();
        let mut workers = [LeasedBuckets::new(store.clone()), LeasedBuckets::new(store.clone())];
        for i in 0..6400 {
            assert!(take(&mut workers[i % 2], &b, "shop", 10), "request {i}");
        }
        let updates = store.0.borrow().1;
        assert_eq!(updates, 64, "one shared update per lease of 100 tokens");
        assert!(!take(&mut workers[0], &b, "shop", 10) && !take(&mut workers[1], &b, "shop", 10));
        assert_eq!(store.0.borrow().1, 66, "an empty bucket is asked on every request");
        // After a refill, leased tokens from before it are spent on top: the documented bound.
        let mut next = 0;
        for i in 0..20_000 {
            if take(&mut workers[i % 2], &b, "shop", 1_010) {
                next += 1;
            }
        }
        assert_eq!(next, 6400);
    }

    #[test]
    fn a_lease_outlives_a_refill_by_at_most_one_lease() {
        let b = TokenBucket { max_tokens: 6400, tokens_per_fill: 6400, fill_interval_ms: 1000 };
        let store = Shared::default();
        let mut early = LeasedBuckets::new(store.clone());
        let mut late = LeasedBuckets::new(store.clone());
        assert!(take(&mut early, &b, "k", 0), "leases 100, spends 1");
        let mut late_admitted = 0;
        while take(&mut late, &b, "k", 0) {
            late_admitted += 1;
        }
        assert_eq!(late_admitted, 6300, "the early worker's 99 unspent tokens are not the late one's");
        // A second later the bucket is full again; the early worker still holds its 99.
        let mut in_second_interval = 0;
        for w in [&mut early, &mut late] {
            while take(w, &b, "k", 1_000) {
                in_second_interval += 1;
            }
        }
        assert_eq!(in_second_interval, 6400 + 99, "maxTokens + one worker's lease - 1");
    }

    #[test]
    fn small_buckets_are_exact_and_the_lease_table_is_bounded() {
        let b = TokenBucket { max_tokens: 3, tokens_per_fill: 1, fill_interval_ms: 1000 };
        assert_eq!(b.lease_size(), 1);
        let mut w = LeasedBuckets::new(Shared::default());
        let got: Vec<bool> = (0..5).map(|_| take(&mut w, &b, "k", 0)).collect();
        assert_eq!(got, [true, true, true, false, false]);
        assert!(w.leases.is_empty(), "single-token leases are not stored");
        let big = TokenBucket { max_tokens: 1 << 20, tokens_per_fill: 1, fill_interval_ms: 1000 };
        for i in 0..(MAX_LEASED_KEYS + 10) {
            assert!(take(&mut w, &big, &i.to_string(), 0));
        }
        assert!(w.leased_keys <= MAX_LEASED_KEYS, "{} keys", w.leased_keys);
    }

    #[test]
    fn a_host_clock_is_read_once() {
        let mut reads = 0;
        let mut clock = HostClock::new(|| {
            reads += 1;
            Ok(7)
        });
        assert_eq!((clock.now_ms(), clock.now_ms()), (Ok(7), Ok(7)));
        assert_eq!(reads, 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1s"), Ok(1000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_ms("2305843009213693953s").unwrap_err().contains("365 days"), "no wrap to 1s");
        assert!(parse_duration_ms("18446744073709551616ms").is_err(), "beyond u64");
        assert_eq!(parse_duration_ms("8760h"), Ok(MAX_DURATION_MS));
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("s").is_err());
    }

    #[test]
    fn request_helpers() {
        let r = Request {
            method: "POST".into(),
            path: "/a?b=c".into(),
            authority: "x".into(),
            headers: vec![("Content-Type".into(), "application/grpc+proto".into())],
        };
        assert_eq!(r.path_only(), "/a");
        assert!(r.is_grpc());
    }
}
