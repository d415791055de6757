//! All model work of the studio, on one background thread: the UI sends jobs and polls for
//! outcomes, so it never waits for the encoder or the decoder.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Tensor;
use eframe::egui;
use image::RgbImage;

use super::background::{Background, Reporter};
use super::document::Version;
use crate::eval::metrics;
use crate::gpu::{EncodeDevice, GpuDecoder};
use crate::model::{Latent, Refinement, SpaeModel, DEFAULT_REFINE_ROUNDS};
use crate::pyramid::saq;
use crate::pyramid::Pyramid;
use crate::teacher::relevance::SemanticTeacher;
use crate::{image_io, paths};

pub enum Job {
    /// Read, prepare and encode an image file, and decode its pyramid as `document`'s
    /// revision 0.
    Encode {
        path: PathBuf,
        document: u64,
    },
    /// Take a pyramid made elsewhere (a generated frame) as a document's revision 0.
    Adopt(AdoptJob),
    Decode(DecodeJob),
    /// Read, prepare and encode the second image of a mix.
    EncodeForMix {
        path: PathBuf,
    },
    /// Decode a mixed pyramid from all its layers (on the CPU: one image).
    DecodeMix(Pyramid),
    /// Refine a document's pyramid (as edited) against the decoder, on the CPU.
    Refine(RefineJob),
}

pub struct RefineJob {
    /// The revision refined: the result applies only while it is still the one shown.
    pub version: Version,
    pub pyramid: Pyramid,
    pub original: RgbImage,
}

pub struct AdoptJob {
    /// The document's name (no file is read).
    pub path: PathBuf,
    pub document: u64,
    /// The image shown as the original: the pyramid's own decode.
    pub original: RgbImage,
    pub pyramid: Pyramid,
    /// What the teacher reads as the image's text.
    pub text: String,
}

pub struct DecodeJob {
    pub version: Version,
    pub pyramid: Pyramid,
    pub latent: Latent,
    pub original: RgbImage,
    /// The prefix on screen: on the CPU it is decoded first and sent ahead as a
    /// [`Outcome::Preview`], so an edit shows after one decode rather than six.
    pub shown: Option<usize>,
}

pub enum Outcome {
    Encoded(Encoded),
    /// An adopted pyramid, ready like an encoded image (but not a file to remember).
    Adopted(Encoded),
    OpenFailed(PathBuf, String),
    Decoded(Decoded),
    /// The prefix on screen of a decode still running (CPU only).
    Preview(Preview),
    DecodeFailed(Version, String),
    MixImage {
        path: PathBuf,
        original: RgbImage,
        pyramid: Pyramid,
    },
    Mixed {
        pyramid: Pyramid,
        image: RgbImage,
    },
    /// A mix's image or its decode failed.
    MixFailed(String),
    /// The refined pyramid of a revision, with what the refinement did.
    Refined {
        version: Version,
        pyramid: Pyramid,
        refinement: Refinement,
    },
    RefineFailed(String),
    /// The GPU encoder failed (why); the image that met the error was encoded on the CPU,
    /// and so is every later one. Sent after that job's own outcome.
    EncoderFellBack(String),
}

pub struct Encoded {
    pub path: PathBuf,
    pub original: RgbImage,
    /// The teacher's relevance of every vocabulary word to the image, or why there is none.
    pub relevance: Result<Vec<f32>, String>,
    pub latent: Latent,
    pub pyramid: Pyramid,
    pub encode_secs: f64,
    /// The encoded pyramid decoded, so the first view and the plots' reference come with it.
    pub decoded: Decoded,
}

/// One prefix's image of a revision, ahead of the rest of its decode.
pub struct Preview {
    pub version: Version,
    /// Decoded from layers 1..=`layers`.
    pub layers: usize,
    pub image: RgbImage,
    pub psnr_db: f64,
}

/// A pyramid decoded from every prefix of its layers, with what the panels show about it.
pub struct Decoded {
    pub version: Version,
    /// `prefixes[k-1]` is the image decoded from the first k layers.
    pub prefixes: Vec<RgbImage>,
    /// PSNR of each prefix against the original, in dB.
    pub psnr_db: Vec<f64>,
    /// `cell_errors[l-1]`: mean squared error of zhat_l against z in each cell of layer l.
    pub cell_errors: Vec<Vec<f32>>,
    /// `targets[l-1]`: the SAQ target of each cell of layer l (row-major, `dim` floats
    /// each), t = l * mean(z) - (l-1) * mean(zhat_{l-1}) with zhat from this pyramid.
    pub targets: Vec<Vec<f32>>,
    pub decode_secs: f64,
    /// True when the images came from the GPU decoder: they are also in its texture layers.
    pub on_gpu: bool,
    /// Why the GPU failed on this decode; it and every later decode ran on the CPU.
    pub gpu_failure: Option<String>,
}

pub type Worker = Background<Job, Outcome>;

/// Starts the model's thread; `ctx` is woken whenever an outcome is ready. Decodes run on
/// `gpu` until it fails, then on the CPU; images are encoded on `encoder`.
pub fn start(
    model: Arc<SpaeModel>,
    mut gpu: Option<GpuDecoder>,
    mut encoder: EncodeDevice,
    ctx: egui::Context,
) -> Worker {
    Background::start("worker", ctx, move |jobs, reporter| {
        let teacher = SemanticTeacher::load(
            &paths::resolve(paths::TEACHER),
            &paths::resolve(paths::IMAGENET_CLASSES),
            model.codebook(),
        )
        .map_err(|e| format!("{e:#}"));
        run(&model, &mut gpu, &mut encoder, teacher.as_ref(), &jobs, &reporter)
    })
}

fn run(
    model: &SpaeModel,
    gpu: &mut Option<GpuDecoder>,
    encoder: &mut EncodeDevice,
    teacher: Result<&SemanticTeacher, &String>,
    jobs: &Receiver<Job>,
    reporter: &Reporter<Outcome>,
) {
    while let Ok(first) = jobs.recv() {
        for job in latest_jobs(first, jobs) {
            let outcome = match job {
                Job::Encode { path, document } => match encode(model, gpu, encoder, teacher, &path, document) {
                    Ok(encoded) => Outcome::Encoded(encoded),
                    Err(e) => Outcome::OpenFailed(path, format!("{e:#}")),
                },
                Job::Adopt(job) => {
                    let path = job.path.clone();
                    adopt(model, gpu, teacher, job)
                        .map_or_else(|e| Outcome::OpenFailed(path, format!("{e:#}")), Outcome::Adopted)
                }
                Job::Decode(job) => {
                    let version = job.version;
                    let preview = |preview| {
                        reporter.send(Outcome::Preview(preview));
                    };
                    decode(model, gpu, job, preview)
                        .map_or_else(|e| Outcome::DecodeFailed(version, format!("{e:#}")), Outcome::Decoded)
                }
                Job::EncodeForMix { path } => match encode_only(model, encoder, &path) {
                    Ok((original, pyramid)) => Outcome::MixImage { path, original, pyramid },
                    Err(e) => Outcome::MixFailed(format!("cannot open {}: {e:#}", path.display())),
                },
                Job::DecodeMix(pyramid) => match model.decode(&pyramid, model.shape().layers()) {
                    Ok(image) => Outcome::Mixed { pyramid, image },
                    Err(e) => Outcome::MixFailed(format!("decoding the mix failed: {e:#}")),
                },
                Job::Refine(job) => match refine(model, job) {
                    Ok((version, pyramid, refinement)) => Outcome::Refined { version, pyramid, refinement },
                    Err(e) => Outcome::RefineFailed(format!("refining the words failed: {e:#}")),
                },
            };
            if !reporter.send(outcome) {
                return;
            }
            if let Some(reason) = encoder.take_failure() {
                if !reporter.send(Outcome::EncoderFellBack(reason)) {
                    return;
                }
            }
        }
    }
}

/// The queued jobs in order, except that only the newest decode (and the newest mix)
/// survives: while the user types faster than the decoder runs, intermediate pyramids are
/// never shown anyway.
fn latest_jobs(first: Job, jobs: &Receiver<Job>) -> Vec<Job> {
    let mut queue = vec![first];
    while let Ok(job) = jobs.try_recv() {
        queue.push(job);
    }
    let last_decode = queue.iter().rposition(|job| matches!(job, Job::Decode(_)));
    let last_mix = queue.iter().rposition(|job| matches!(job, Job::DecodeMix(_)));
    queue
        .into_iter()
        .enumerate()
        .filter(|(i, job)| match job {
            Job::Decode(_) => Some(*i) == last_decode,
            Job::DecodeMix(_) => Some(*i) == last_mix,
            _ => true,
        })
        .map(|(_, job)| job)
        .collect()
}

/// A job's pyramid refined for [`DEFAULT_REFINE_ROUNDS`] rounds against its original image.
fn refine(model: &SpaeModel, job: RefineJob) -> Result<(Version, Pyramid, Refinement)> {
    let RefineJob { version, mut pyramid, original } = job;
    let pixels = image_io::to_tensor(std::slice::from_ref(&original))?;
    let refinement = model.refine(&pixels, std::slice::from_mut(&mut pyramid), DEFAULT_REFINE_ROUNDS)?;
    Ok((version, pyramid, refinement))
}

/// An image file's prepared pixels and pyramid.
fn encode_only(model: &SpaeModel, encoder: &mut EncodeDevice, path: &Path) -> Result<(RgbImage, Pyramid)> {
    let original = image_io::load_prepared(path, model.config().resolution as u32)?;
    let pyramid = encoder.encode(model, std::slice::from_ref(&original))?.pyramids.remove(0);
    Ok((original, pyramid))
}

fn encode(
    model: &SpaeModel,
    gpu: &mut Option<GpuDecoder>,
    encoder: &mut EncodeDevice,
    teacher: Result<&SemanticTeacher, &String>,
    path: &Path,
    document: u64,
) -> Result<Encoded> {
    let original = image_io::load_prepared(path, model.config().resolution as u32)?;
    let start = Instant::now();
    let mut batch = encoder.encode(model, std::slice::from_ref(&original))?;
    let encode_secs = start.elapsed().as_secs_f64();
    let (latent, pyramid) = (batch.latent, batch.pyramids.remove(0));
    let decoded = decode_first_revision(model, gpu, document, &pyramid, &latent, &original)?;
    // The teacher reads the file's name as the image's text ("cat-face.png": cat, face).
    let text = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let relevance = relevance(model, teacher, &original, text)?;
    Ok(Encoded { path: path.to_path_buf(), original, relevance, latent, pyramid, encode_secs, decoded })
}

/// A pyramid that no encoder made: the latent z is its own dequantized latent (all
/// layers), so quantization errors and SAQ targets (all from z) are measured against
/// itself.
fn adopt(
    model: &SpaeModel,
    gpu: &mut Option<GpuDecoder>,
    teacher: Result<&SemanticTeacher, &String>,
    job: AdoptJob,
) -> Result<Encoded> {
    let AdoptJob { path, document, original, pyramid, text } = job;
    let z = saq::dequantize(std::slice::from_ref(&pyramid), model.codebook(), model.shape().layers())?;
    let latent = Latent { z, named: Vec::new() };
    let decoded = decode_first_revision(model, gpu, document, &pyramid, &latent, &original)?;
    let relevance = relevance(model, teacher, &original, text)?;
    Ok(Encoded { path, original, relevance, latent, pyramid, encode_secs: 0.0, decoded })
}

/// Every prefix of a new document's pyramid (its revision 0), all at once.
fn decode_first_revision(
    model: &SpaeModel,
    gpu: &mut Option<GpuDecoder>,
    document: u64,
    pyramid: &Pyramid,
    latent: &Latent,
    original: &RgbImage,
) -> Result<Decoded> {
    let version = Version { document, revision: 0 };
    let job = DecodeJob {
        version,
        pyramid: pyramid.clone(),
        latent: latent.clone(),
        original: original.clone(),
        shown: None,
    };
    decode(model, gpu, job, |_| {})
}

/// The teacher's relevance of every vocabulary word to `image` described by `text`, or why
/// there is none.
fn relevance(
    model: &SpaeModel,
    teacher: Result<&SemanticTeacher, &String>,
    image: &RgbImage,
    text: String,
) -> Result<Result<Vec<f32>, String>> {
    Ok(match teacher {
        Ok(teacher) => {
            let pixels = image_io::to_tensor(std::slice::from_ref(image))?;
            teacher
                .scores_or_why(&pixels, &text, model.codebook().vocabulary())
                .unwrap_or_else(|e| Err(format!("{e:#}")))
        }
        Err(reason) => Err(format!("no teacher: {reason}")),
    })
}

/// Every prefix of `job`'s pyramid; on the CPU the prefix on screen comes first and goes
/// to `preview` at once.
fn decode(
    model: &SpaeModel,
    gpu: &mut Option<GpuDecoder>,
    job: DecodeJob,
    mut preview: impl FnMut(Preview),
) -> Result<Decoded> {
    let layers = model.shape().layers();
    // zhat of every prefix, on the CPU: the quantization errors and SAQ targets need it.
    let zhats = (1..=layers)
        .map(|l| saq::dequantize(std::slice::from_ref(&job.pyramid), model.codebook(), l))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut gpu_failure = None;
    let on_gpu = gpu.as_ref().map(|decoder| {
        let items: Vec<_> = (1..=layers).map(|k| (&job.pyramid, k)).collect();
        decoder.decode(&items).map(|decode| decode.images())
    });
    let (prefixes, on_gpu) = match on_gpu {
        Some(Ok(images)) => (images, true),
        failed_or_none => {
            if let Some(Err(e)) = failed_or_none {
                gpu_failure = Some(format!("{e:#}"));
                *gpu = None;
            }
            // One prefix at a time (candle's CPU convolutions are slower on a batch of six),
            // the one on screen first.
            let decode_prefix = |k: usize| Ok(image_io::from_tensor(&model.decode_latent(&zhats[k - 1])?)?.remove(0));
            let mut images: Vec<Option<RgbImage>> = vec![None; layers];
            if let Some(k) = job.shown.filter(|k| (1..=layers).contains(k)) {
                let image: RgbImage = decode_prefix(k)?;
                let psnr_db = metrics::psnr(&job.original, &image);
                preview(Preview { version: job.version, layers: k, image: image.clone(), psnr_db });
                images[k - 1] = Some(image);
            }
            let images = images
                .into_iter()
                .enumerate()
                .map(|(i, image)| image.map_or_else(|| decode_prefix(i + 1), Ok))
                .collect::<Result<Vec<_>>>()?;
            (images, false)
        }
    };
    let decode_secs = start.elapsed().as_secs_f64();
    let psnr_db = prefixes.iter().map(|p| metrics::psnr(&job.original, p)).collect();
    let cell_errors = (1..=layers)
        .map(|l| Ok(saq::cell_errors(&job.latent.z, &zhats[l - 1], model.shape(), l)?.flatten_all()?.to_vec1()?))
        .collect::<Result<Vec<_>>>()?;
    let targets = (1..=layers)
        .map(|l| saq_targets(model, &job.latent, l.checked_sub(2).map(|i| &zhats[i]), l))
        .collect::<Result<Vec<_>>>()
        .context("computing the SAQ targets")?;
    Ok(Decoded { version: job.version, prefixes, psnr_db, cell_errors, targets, decode_secs, on_gpu, gpu_failure })
}

/// The SAQ targets of each cell of `layer`, channel-last: those the semantic branch
/// names, or from z by cell means (the default `cell_target`), for the nearest
/// alternatives.
fn saq_targets(model: &SpaeModel, latent: &Latent, previous: Option<&Tensor>, layer: usize) -> Result<Vec<f32>> {
    let target = match latent.named.get(layer - 1) {
        Some(named) => named.clone(),
        None => saq::cell_mean_targets(&latent.z, previous, model.shape(), layer)?,
    };
    Ok(target.permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Gpu;

    /// A GPU that stops working mid-session: the decode that meets the error runs on the
    /// CPU instead, says why, and so do the decodes after it; no job is lost.
    #[test]
    fn a_gpu_error_falls_back_to_the_cpu_for_this_and_later_decodes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let model = Arc::new(
            SpaeModel::open(&root.join(paths::DEFAULT_MODEL_DIR), &root.join(paths::LLM_GGUF), false).unwrap(),
        );
        let gpu = Gpu::headless().expect("no GPU adapter: install mesa-vulkan-drivers for lavapipe");
        let device = gpu.device.clone();
        let decoder = GpuDecoder::new(gpu, &model, model.shape().layers()).unwrap();
        let worker = start(model.clone(), Some(decoder), EncodeDevice::cpu(), egui::Context::default());
        let original =
            image_io::load_prepared(&root.join(super::super::SAMPLE_IMAGE), model.config().resolution as u32).unwrap();
        let (latent, mut quantized) =
            model.quantize(&image_io::to_tensor(std::slice::from_ref(&original)).unwrap()).unwrap();
        let pyramid = quantized.pyramids.remove(0);
        let decode = |revision| {
            let version = Version { document: 0, revision };
            worker.send(Job::Decode(DecodeJob {
                version,
                pyramid: pyramid.clone(),
                latent: latent.clone(),
                original: original.clone(),
                shown: None,
            }));
            match worker.wait(std::time::Duration::from_secs(120)).expect("the decode within two minutes") {
                Outcome::Decoded(decoded) => decoded,
                _ => panic!("the decode failed"),
            }
        };
        let cpu: Vec<RgbImage> = (1..=6).map(|k| model.decode(&pyramid, k).unwrap()).collect();
        let close = |images: &[RgbImage]| {
            images.iter().zip(&cpu).all(|(a, b)| a.as_raw().iter().zip(b.as_raw()).all(|(x, y)| x.abs_diff(*y) <= 1))
        };

        let first = decode(0);
        assert!(first.on_gpu && first.gpu_failure.is_none());
        assert!(close(&first.prefixes));
        device.destroy();
        let second = decode(1);
        assert!(!second.on_gpu, "decoded on a destroyed device");
        assert!(second.gpu_failure.is_some());
        assert_eq!(second.prefixes, cpu, "the CPU decode replaces the failed one");
        let third = decode(2);
        assert!(!third.on_gpu && third.gpu_failure.is_none(), "the GPU is not retried");
        assert_eq!(third.version.revision, 2);
    }

    /// A GPU that stops working mid-session while encoding: the image that meets the
    /// error is encoded on the CPU instead and the outcome says why; later images stay on
    /// the CPU; every document opens.
    #[test]
    fn a_gpu_error_while_encoding_falls_back_to_the_cpu() {
        use crate::gpu::GpuEncoder;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let model = Arc::new(
            SpaeModel::open(&root.join(paths::DEFAULT_MODEL_DIR), &root.join(paths::LLM_GGUF), false).unwrap(),
        );
        let gpu = Gpu::headless().expect("no GPU adapter: install mesa-vulkan-drivers for lavapipe");
        let device = gpu.device.clone();
        let encoder = EncodeDevice::gpu(GpuEncoder::new(gpu, &model, 1).unwrap());
        let worker = start(model.clone(), None, encoder, egui::Context::default());
        let path = root.join(super::super::SAMPLE_IMAGE);
        let original = image_io::load_prepared(&path, model.config().resolution as u32).unwrap();
        let cpu = model.encode(&original).unwrap();
        let next = || worker.wait(std::time::Duration::from_secs(300)).expect("an outcome within five minutes");
        let open = |document| {
            worker.send(Job::Encode { path: path.clone(), document });
            match next() {
                Outcome::Encoded(encoded) => encoded,
                _ => panic!("the image did not open"),
            }
        };
        assert_eq!(open(0).pyramid, cpu);
        device.destroy();
        assert_eq!(open(1).pyramid, cpu, "the CPU encodes the image instead");
        assert!(matches!(next(), Outcome::EncoderFellBack(_)), "the failure is reported after the image");
        assert_eq!(open(2).pyramid, cpu);
        // Reported once: the GPU is not retried, so the mix's image brings no second report.
        worker.send(Job::EncodeForMix { path: path.clone() });
        assert!(matches!(next(), Outcome::MixImage { .. }));
        worker.send(Job::Encode { path: path.clone(), document: 3 });
        assert!(matches!(next(), Outcome::Encoded(_)), "no report between the two");
    }
}
