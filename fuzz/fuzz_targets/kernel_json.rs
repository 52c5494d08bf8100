//! Fuzz target: `Kernel::from_json`. Any input gives `Ok` or `KernelError`, never a panic; an accepted kernel is
//! valid and survives a `to_json` / `from_json` round trip bit for bit.
#![no_main]

use icnr_upscale::kernel::Kernel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(kernel) = Kernel::from_json(data) else { return };
    // The fields are private and every constructor validates: rebuilding from the tensors must succeed.
    Kernel::new(kernel.weight().clone(), Some(kernel.bias().clone())).expect("from_json returned an invalid kernel");
    let again = Kernel::from_json(kernel.to_json().as_bytes()).expect("to_json output must read back");
    assert_eq!(again.scale(), kernel.scale());
    assert_eq!(again.kernel_size(), kernel.kernel_size());
    assert_eq!(again.init(), kernel.init());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(again.weight().as_slice().unwrap()), bits(kernel.weight().as_slice().unwrap()));
    assert_eq!(bits(again.bias().as_slice().unwrap()), bits(kernel.bias().as_slice().unwrap()));
});
