//! Reading and writing a guest's exported linear memory from inside a host function.

use wasmtime::{Caller, Extern, Memory};

pub(super) fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg("the guest exports no memory")),
    }
}

pub fn read<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> wasmtime::Result<Vec<u8>> {
    let mem = memory(caller)?;
    let mut buf = vec![0; len.max(0) as usize];
    mem.read(&*caller, ptr as u32 as usize, &mut buf).map_err(|e| wasmtime::Error::msg(e.to_string()))?;
    Ok(buf)
}

pub fn read_str<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> wasmtime::Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

pub fn write<T>(caller: &mut Caller<'_, T>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let mem = memory(caller)?;
    mem.write(caller, ptr as u32 as usize, bytes).map_err(|e| wasmtime::Error::msg(e.to_string()))
}
