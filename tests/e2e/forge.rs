//! Components forged for tests: a real plugin's code under another
//! manifest (a squatter copying a name, or claiming a task type), and a
//! generated component with one huge function.

use wasmq::plugins::Manifest;

fn leb(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(payload.len(), out);
    out.extend_from_slice(payload);
}

/// The manifest of a component file.
pub fn manifest_of(component: &str) -> Manifest {
    let wasm = std::fs::read(component).expect("the component is readable");
    Manifest::from_component(&wasm).expect("the component has a manifest")
}

/// The component's code under a manifest changed by `change`: the new
/// manifest is put first, where the host reads it.
pub fn with_manifest(component: &str, change: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    let wasm = std::fs::read(component).expect("the component is readable");
    let mut manifest = Manifest::from_component(&wasm).expect("the component has a manifest");
    change(&mut manifest);
    let mut payload = Vec::new();
    let name = wasmq::plugins::MANIFEST_SECTION.as_bytes();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(manifest.to_toml().as_bytes());
    let mut out = wasm[..8].to_vec();
    section(0, &payload, &mut out);
    out.extend_from_slice(&wasm[8..]);
    out
}

/// A component holding one core module with one function whose body is
/// `body_bytes` long (`nop`s): cheap to build and to check, refused by a
/// worker whose --max-function-size is below it.
pub fn huge_function_component(body_bytes: usize) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    section(3, &[1, 0], &mut module);
    let mut body = vec![0u8]; // no locals
    body.resize(body_bytes.saturating_sub(1).max(1), 0x01);
    body.push(0x0b);
    let mut code = Vec::new();
    leb(1, &mut code);
    leb(body.len(), &mut code);
    code.extend_from_slice(&body);
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}
