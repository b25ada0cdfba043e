//! The on-disk cache of compiled components: wasmtime's precompiled form, keyed by the
//! component's SHA-256 and the engine's compatibility hash, written atomically once the
//! component passed its checks; and the components loaded now, shared by every version
//! of the same handler.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use wasmtime::component::Component;

use super::engine::{HandlerRuntime, RuntimeError};

impl HandlerRuntime {
    /// The compiled component: the one loaded already for another version, from the
    /// cache, or compiled now; when compiled now and a cache is configured, also where
    /// to cache it and the bytes (the caller writes them once the component passed its
    /// checks).
    #[allow(clippy::type_complexity)]
    pub(super) fn load_component(
        &self,
        wasm: &[u8],
    ) -> Result<(Arc<Component>, Option<(PathBuf, Vec<u8>)>), RuntimeError> {
        let key = self.cache_key(wasm);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = loaded.get(&key).and_then(Weak::upgrade) {
            return Ok((c, None));
        }
        loaded.retain(|_, c| c.strong_count() > 0);
        let (component, compiled) = self.load_uncached(wasm, &key)?;
        let component = Arc::new(component);
        loaded.insert(key, Arc::downgrade(&component));
        Ok((component, compiled))
    }

    #[allow(clippy::type_complexity)]
    fn load_uncached(
        &self,
        wasm: &[u8],
        key: &str,
    ) -> Result<(Component, Option<(PathBuf, Vec<u8>)>), RuntimeError> {
        let Some(dir) = &self.cache_dir else {
            let component = Component::new(&self.engine, wasm)
                .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))?;
            return Ok((component, None));
        };
        let path = dir.join(format!("{key}.cwasm"));
        if path.is_file() {
            // SAFETY: the cache holds only files this runtime wrote with
            // `Engine::precompile_component`, under a key that includes the engine's
            // compatibility hash; wasmtime checks the header again on load.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, None)),
                Err(e) => tracing::warn!("ignoring cached component {}: {e:#}", path.display()),
            }
        }
        let compiled = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))?;
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(RuntimeError::from)?;
        Ok((component, Some((path, compiled))))
    }

    fn cache_key(&self, wasm: &[u8]) -> String {
        use sha2::Digest;
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let digest = sha2::Sha256::digest(wasm);
        format!("{:x}-{:016x}", digest, engine_hash.finish())
    }
}

pub(super) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
