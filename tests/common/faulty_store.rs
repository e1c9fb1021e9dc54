//! An `object_store` wrapper that injects faults at chosen calls, so races
//! between writers and listings are reproduced deterministically, not by
//! repetition: lease reads that fail or hang, objects that vanish between a
//! listing and a read, something done just before a chosen put.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A hook run (once) before a put to a path that contains a given text.
type BeforePut = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Faults {
    /// Reads (GET or HEAD) of paths containing this fail with a 503-like
    /// error.
    fail_reads: Option<String>,
    /// Reads of paths containing this hang this long first.
    hang_reads: Option<(String, Duration)>,
    /// Reads of paths containing one of these answer "not found" (the
    /// object vanished after it was listed).
    vanished: Vec<String>,
    /// Run before the first put to a path containing the text.
    before_put: Vec<(String, BeforePut)>,
    /// How many reads were failed, hung or vanished.
    injected: usize,
}

/// Wraps a store; with no fault set it behaves exactly like it.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Mutex<Faults>,
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner,
            faults: Mutex::new(Faults::default()),
        })
    }

    /// Reads of paths containing `part` fail from now on.
    pub fn fail_reads(&self, part: &str) {
        self.faults.lock().unwrap().fail_reads = Some(part.to_string());
    }

    /// Reads of paths containing `part` first wait `delay` from now on.
    pub fn hang_reads(&self, part: &str, delay: Duration) {
        self.faults.lock().unwrap().hang_reads = Some((part.to_string(), delay));
    }

    /// Reads of paths containing `part` answer "not found" from now on.
    pub fn vanish(&self, part: &str) {
        self.faults.lock().unwrap().vanished.push(part.to_string());
    }

    /// Runs `hook` just before the first put to a path containing `part`.
    pub fn before_put(&self, part: &str, hook: impl FnOnce() + Send + 'static) {
        self.faults
            .lock()
            .unwrap()
            .before_put
            .push((part.to_string(), Box::new(hook)));
    }

    /// Clears every fault.
    pub fn heal(&self) {
        let mut faults = self.faults.lock().unwrap();
        let injected = faults.injected;
        *faults = Faults::default();
        faults.injected = injected;
    }

    /// How many reads a fault changed so far.
    pub fn injected(&self) -> usize {
        self.faults.lock().unwrap().injected
    }

    /// What to do with a read of `location`.
    fn on_read(&self, location: &Path) -> ReadFault {
        let path = location.as_ref();
        let mut faults = self.faults.lock().unwrap();
        let fault = if faults.vanished.iter().any(|v| path.contains(v.as_str())) {
            ReadFault::Vanished
        } else if faults
            .fail_reads
            .as_ref()
            .is_some_and(|f| path.contains(f.as_str()))
        {
            ReadFault::Fail
        } else if let Some((_, delay)) = faults
            .hang_reads
            .as_ref()
            .filter(|(h, _)| path.contains(h.as_str()))
        {
            ReadFault::Hang(*delay)
        } else {
            return ReadFault::None;
        };
        faults.injected += 1;
        fault
    }
}

enum ReadFault {
    None,
    Fail,
    Hang(Duration),
    Vanished,
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let hook = {
            let mut faults = self.faults.lock().unwrap();
            let at = faults
                .before_put
                .iter()
                .position(|(part, _)| location.as_ref().contains(part.as_str()));
            at.map(|i| faults.before_put.remove(i).1)
        };
        if let Some(hook) = hook {
            // Off the runtime's worker threads: the hook may block on
            // requests of its own.
            tokio::task::spawn_blocking(hook)
                .await
                .expect("the before-put hook panicked");
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.on_read(location) {
            ReadFault::None => {}
            ReadFault::Fail => {
                return Err(object_store::Error::Generic {
                    store: "FaultyStore",
                    source: "503 Service Unavailable (injected)".into(),
                });
            }
            ReadFault::Hang(delay) => tokio::time::sleep(delay).await,
            ReadFault::Vanished => {
                return Err(object_store::Error::NotFound {
                    path: location.to_string(),
                    source: "deleted after it was listed (injected)".into(),
                });
            }
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
