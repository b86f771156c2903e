//! The OPA wasm ABI exports, over a bump heap whose pointer the host reads and resets.
//!
//! Hosts keep `data` below the heap pointer they saved after `setData`, write each input just
//! above it, and reset the heap there for every evaluation. So two kinds of memory:
//! - host memory (`opa_malloc`, parsed JSON values, result strings): a bump heap the host owns;
//! - our own (the compiled RuleSet, regex caches, evaluation temporaries): a real allocator over a
//!   fixed arena reserved below every heap pointer the host ever sees, so it survives evaluations.

use crate::translate::{self, ENTRYPOINTS};
use linked_list_allocator::Heap;
use policy_core::Policy;
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

const PAGE: usize = 65_536;
const ARENA_BYTES: usize = 2 << 20;

extern "C" {
    static __heap_base: u8;
}

static mut HEAP_PTR: usize = 0;
static mut ARENA_START: usize = 0;
static mut ARENA_END: usize = 0;
static mut ARENA: Heap = Heap::empty();
/// Allocations go to the host's bump heap while set.
static mut HOST_MODE: bool = false;
/// Set when the arena was full and an allocation of ours fell back to the host heap.
static mut ARENA_OVERFLOW: bool = false;
/// The last compiled RuleSet and the source it came from (`None`: built-in).
static mut CACHE: Option<(Option<Value>, Policy)> = None;

fn align(addr: usize, to: usize) -> usize {
    (addr + to - 1) & !(to - 1)
}

/// Grows memory so that `end` is addressable; false when the host refuses.
fn ensure(end: usize) -> bool {
    let have = core::arch::wasm32::memory_size(0) * PAGE;
    if end <= have {
        return true;
    }
    let pages = (end - have).div_ceil(PAGE);
    core::arch::wasm32::memory_grow(0, pages) != usize::MAX
}

unsafe fn init() {
    if HEAP_PTR == 0 {
        ARENA_START = align(core::ptr::addr_of!(__heap_base) as usize, 16);
        ARENA_END = ARENA_START + ARENA_BYTES;
        HEAP_PTR = ARENA_END;
        if ensure(ARENA_END) {
            (*core::ptr::addr_of_mut!(ARENA)).init(ARENA_START as *mut u8, ARENA_BYTES);
        }
    }
}

/// Runs `f` with allocations in host memory.
unsafe fn in_host_memory<T>(f: impl FnOnce() -> T) -> T {
    let previous = HOST_MODE;
    HOST_MODE = true;
    let result = f();
    HOST_MODE = previous;
    result
}

struct Allocator;

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        init();
        if !HOST_MODE {
            if let Ok(p) = (*core::ptr::addr_of_mut!(ARENA)).allocate_first_fit(layout) {
                return p.as_ptr();
            }
            ARENA_OVERFLOW = true;
        }
        let start = align(HEAP_PTR, layout.align());
        let end = start + layout.size();
        if !ensure(end) {
            return core::ptr::null_mut();
        }
        HEAP_PTR = end;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let addr = ptr as usize;
        if addr >= ARENA_START && addr < ARENA_END {
            if let Some(p) = NonNull::new(ptr) {
                (*core::ptr::addr_of_mut!(ARENA)).deallocate(p, layout);
            }
        }
        // Host memory is reclaimed by the host resetting the heap pointer.
    }
}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// Moves `v` into host memory (a deep copy: its nodes may be ours) and returns its address.
fn boxed(v: Value) -> i32 {
    unsafe { in_host_memory(|| boxed_in_place(v.clone())) }
}

/// Boxes a value built in host memory (a parse result) without copying its nodes.
fn boxed_in_place(v: Value) -> i32 {
    unsafe { in_host_memory(|| Box::into_raw(Box::new(v)) as usize as i32) }
}

unsafe fn value<'a>(addr: i32) -> Option<&'a Value> {
    (addr as usize as *const Value).as_ref()
}

unsafe fn bytes<'a>(addr: i32, len: i32) -> &'a [u8] {
    core::slice::from_raw_parts(addr as usize as *const u8, len.max(0) as usize)
}

unsafe fn parse(addr: i32, len: i32) -> Option<Value> {
    in_host_memory(|| translate::parse_json(bytes(addr, len)))
}

fn dump(v: &Value) -> i32 {
    unsafe {
        in_host_memory(|| {
            let mut text = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
            text.push(0);
            let leaked: &'static mut [u8] = text.leak();
            leaked.as_ptr() as usize as i32
        })
    }
}

/// The compiled RuleSet for `source`, cached in the arena while the source stays the same.
unsafe fn policy(source: Option<&Value>) -> Result<&'static Policy, String> {
    let slot = &mut *core::ptr::addr_of_mut!(CACHE);
    if slot.as_ref().is_some_and(|(key, _)| key.as_ref() == source) {
        return slot.as_ref().map(|(_, p)| p).ok_or_else(|| "cache".into());
    }
    *slot = None;
    *slot = Some(translate::compile(source).map(|p| (source.cloned(), p))?);
    slot.as_ref().map(|(_, p)| p).ok_or_else(|| "cache".into())
}

/// The compiled RuleSet in force: `parameters`, else `data`, else the built-in one. Compiled in
/// our arena also when asked for in the middle of a parse into host memory.
unsafe fn policy_for(parameters: Option<&Value>, data: Option<&Value>) -> Result<&'static Policy, String> {
    let source = translate::rule_set(parameters, data);
    let previous = HOST_MODE;
    HOST_MODE = false;
    let policy = policy(source.as_deref());
    HOST_MODE = previous;
    policy
}

/// Entrypoint `id`'s result: `evaluate` with the policy, or the error of a RuleSet that does not
/// load. `ARENA_OVERFLOW` is cleared before the policy is had.
unsafe fn answer(id: usize, policy: Result<&Policy, String>, evaluate: impl FnOnce(&Policy) -> Value) -> Value {
    let result = match policy {
        Ok(p) => evaluate(p),
        Err(e) => translate::error_result(id, &e),
    };
    if ARENA_OVERFLOW {
        // Part of the cached RuleSet (a regex cache, say) may now sit in host memory, which the
        // next evaluation overwrites: drop it while that memory is still intact.
        *core::ptr::addr_of_mut!(CACHE) = None;
    }
    result
}

struct Ctx {
    input: i32,
    data: i32,
    entrypoint: i32,
    result: i32,
}

#[no_mangle]
pub extern "C" fn opa_malloc(size: i32) -> i32 {
    unsafe {
        in_host_memory(|| ALLOCATOR.alloc(Layout::from_size_align_unchecked(size.max(0) as usize, 8)) as usize as i32)
    }
}

#[no_mangle]
pub extern "C" fn opa_free(_addr: i32) {}

#[no_mangle]
pub extern "C" fn opa_heap_ptr_get() -> i32 {
    unsafe {
        init();
        HEAP_PTR as i32
    }
}

#[no_mangle]
pub extern "C" fn opa_heap_ptr_set(addr: i32) {
    unsafe {
        init();
        HEAP_PTR = addr as usize;
    }
}

#[no_mangle]
pub extern "C" fn opa_json_parse(addr: i32, len: i32) -> i32 {
    unsafe { parse(addr, len).map_or(0, boxed_in_place) }
}

#[no_mangle]
pub extern "C" fn opa_value_parse(addr: i32, len: i32) -> i32 {
    opa_json_parse(addr, len)
}

#[no_mangle]
pub extern "C" fn opa_json_dump(addr: i32) -> i32 {
    unsafe { dump(value(addr).unwrap_or(&Value::Null)) }
}

#[no_mangle]
pub extern "C" fn opa_value_dump(addr: i32) -> i32 {
    opa_json_dump(addr)
}

#[no_mangle]
pub extern "C" fn builtins() -> i32 {
    boxed(Value::Object(Default::default()))
}

#[no_mangle]
pub extern "C" fn entrypoints() -> i32 {
    boxed(translate::entrypoints())
}

#[no_mangle]
pub extern "C" fn opa_eval_ctx_new() -> i32 {
    unsafe {
        in_host_memory(|| Box::into_raw(Box::new(Ctx { input: 0, data: 0, entrypoint: 0, result: 0 })) as usize as i32)
    }
}

unsafe fn ctx<'a>(addr: i32) -> Option<&'a mut Ctx> {
    (addr as usize as *mut Ctx).as_mut()
}

#[no_mangle]
pub extern "C" fn opa_eval_ctx_set_input(c: i32, v: i32) {
    if let Some(c) = unsafe { ctx(c) } {
        c.input = v;
    }
}

#[no_mangle]
pub extern "C" fn opa_eval_ctx_set_data(c: i32, v: i32) {
    if let Some(c) = unsafe { ctx(c) } {
        c.data = v;
    }
}

#[no_mangle]
pub extern "C" fn opa_eval_ctx_set_entrypoint(c: i32, id: i32) {
    if let Some(c) = unsafe { ctx(c) } {
        c.entrypoint = id;
    }
}

#[no_mangle]
pub extern "C" fn opa_eval_ctx_get_result(c: i32) -> i32 {
    unsafe { ctx(c).map_or(0, |c| c.result) }
}

#[no_mangle]
pub extern "C" fn eval(c: i32) -> i32 {
    unsafe {
        let Some(c) = ctx(c) else { return 1 };
        if c.entrypoint < 0 || c.entrypoint as usize >= ENTRYPOINTS.len() {
            return 1;
        }
        let (id, input, data) = (c.entrypoint as usize, value(c.input), value(c.data));
        let result = if cfg!(feature = "floor") {
            translate::floor_result(id)
        } else {
            ARENA_OVERFLOW = false;
            answer(id, policy_for(translate::parameters(input), data), |p| translate::evaluate(p, id, input, data))
        };
        c.result = boxed(result);
        0
    }
}

/// ABI 1.2's one-call path: the input JSON sits just below `heap_ptr`. The reviewed payload is
/// decoded for the RuleSet in force ([`translate::read_input`]); the benchmark floor decodes the
/// whole input, as an engine deciding on a JSON tree must.
#[no_mangle]
pub extern "C" fn opa_eval(
    _reserved: i32,
    entrypoint: i32,
    data: i32,
    input: i32,
    input_len: i32,
    heap_ptr: i32,
    _format: i32,
) -> i32 {
    unsafe {
        init();
        HEAP_PTR = heap_ptr as usize;
        let (id, data) = (entrypoint.max(0) as usize, value(data));
        let text = if input_len > 0 { translate::json_text(bytes(input, input_len)) } else { None };
        ARENA_OVERFLOW = false;
        let read = match text {
            Some(text) if !cfg!(feature = "floor") => {
                in_host_memory(|| translate::read_input(text, |parameters| policy_for(parameters, data)))
            }
            _ => None,
        };
        // What is parsed lives in host memory, which the host takes back by resetting the heap;
        // dropping it would walk the whole tree to free nothing.
        let result = match read {
            Some(read) => {
                let payload = read.payload;
                let result = answer(id, read.policy, |p| translate::evaluate_payload(p, id, payload.as_ref(), data));
                std::mem::forget(payload);
                result
            }
            None => {
                let parsed = text.and_then(|t| in_host_memory(|| policy_core::decode::json_value(t).ok()));
                let input = parsed.as_ref();
                let result = if cfg!(feature = "floor") {
                    translate::floor_result(id)
                } else {
                    answer(id, policy_for(translate::parameters(input), data), |p| {
                        translate::evaluate(p, id, input, data)
                    })
                };
                std::mem::forget(parsed);
                result
            }
        };
        dump(&result)
    }
}
