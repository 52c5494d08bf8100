//! Fuzz target: `Kernel::from_safetensors`. Any input gives `Ok` or `KernelError`, never a panic; an accepted
//! kernel is valid and reads back unchanged through kernel JSON.
#![no_main]

use icnr_upscale::kernel::Kernel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(kernel) = Kernel::from_safetensors(data) else { return };
    // The fields are private and every constructor validates: rebuilding from the tensors must succeed.
    Kernel::new(kernel.weight().clone(), Some(kernel.bias().clone())).expect("from_safetensors returned an invalid kernel");
    let again = Kernel::from_json(kernel.to_json().as_bytes()).expect("to_json output must read back");
    assert_eq!(again, kernel);
});
