//! The compute pipelines built from `shaders/*.wgsl`, each with an explicit bind group
//! layout so one bind group can serve every entry point of a shader.

use std::borrow::Cow;

/// What one binding of a kernel holds.
#[derive(Clone, Copy)]
enum Slot {
    Uniform,
    Read,
    ReadWrite,
    /// A write-only RGBA8 2-D texture array.
    Image,
}

pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl Kernel {
    fn new(device: &wgpu::Device, module: &wgpu::ShaderModule, entry: &str, layout: &wgpu::BindGroupLayout) -> Self {
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        Self { pipeline, layout: layout.clone() }
    }

    /// A bind group of `resources`, in binding order.
    pub fn bind(&self, device: &wgpu::Device, resources: &[wgpu::BindingResource<'_>]) -> wgpu::BindGroup {
        let entries: Vec<_> = resources
            .iter()
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource: resource.clone() })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &self.layout, entries: &entries })
    }

    /// Records one dispatch of `workgroups` into `pass`.
    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>, bind_group: &wgpu::BindGroup, workgroups: [u32; 3]) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
    }
}

/// Every kernel the decoder and the encoder run.
pub struct Kernels {
    pub dequantize: Kernel,
    pub conv2d: Kernel,
    pub depthwise: Kernel,
    pub group_norm_statistics: Kernel,
    pub group_norm_apply: Kernel,
    pub to_rgba: Kernel,
    pub teacher_input: Kernel,
    pub average_pool: Kernel,
    pub add_cells: Kernel,
    pub named_targets: Kernel,
    pub cell_targets: Kernel,
    pub nearest: Kernel,
    pub choose: Kernel,
    pub add_words: Kernel,
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Self {
        use Slot::*;
        let dequantize = shader(device, "dequantize", include_str!("../../shaders/dequantize.wgsl"));
        let conv2d = shader(device, "conv2d", include_str!("../../shaders/conv2d.wgsl"));
        let group_norm = shader(device, "group_norm", include_str!("../../shaders/group_norm.wgsl"));
        let to_rgba = shader(device, "to_rgba", include_str!("../../shaders/to_rgba.wgsl"));
        let branch = shader(device, "semantic_branch", include_str!("../../shaders/semantic_branch.wgsl"));
        let saq = shader(device, "saq", include_str!("../../shaders/saq.wgsl"));
        let conv_layout = layout(device, &[Uniform, Read, Read, Read, Read, ReadWrite]);
        let group_norm_layout = layout(device, &[Uniform, Read, Read, Read, ReadWrite, ReadWrite]);
        let branch_layout = layout(device, &[Uniform, Read, Read, ReadWrite]);
        let saq_layout = layout(device, &[Uniform, Read, ReadWrite, Read, Read, ReadWrite, ReadWrite, ReadWrite]);
        Self {
            dequantize: Kernel::new(
                device,
                &dequantize,
                "main",
                &layout(device, &[Uniform, Read, Read, Read, ReadWrite]),
            ),
            conv2d: Kernel::new(device, &conv2d, "main", &conv_layout),
            depthwise: Kernel::new(device, &conv2d, "depthwise", &conv_layout),
            group_norm_statistics: Kernel::new(device, &group_norm, "statistics", &group_norm_layout),
            group_norm_apply: Kernel::new(device, &group_norm, "apply", &group_norm_layout),
            to_rgba: Kernel::new(device, &to_rgba, "main", &layout(device, &[Read, ReadWrite, Image])),
            teacher_input: Kernel::new(device, &branch, "teacher_input", &branch_layout),
            average_pool: Kernel::new(device, &branch, "average_pool", &branch_layout),
            add_cells: Kernel::new(device, &branch, "add_cells", &branch_layout),
            named_targets: Kernel::new(device, &branch, "named_targets", &branch_layout),
            cell_targets: Kernel::new(device, &saq, "cell_targets", &saq_layout),
            nearest: Kernel::new(device, &saq, "nearest", &saq_layout),
            choose: Kernel::new(device, &saq, "choose", &saq_layout),
            add_words: Kernel::new(device, &saq, "add_words", &saq_layout),
        }
    }
}

fn shader(device: &wgpu::Device, label: &str, source: &'static str) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(source)),
    })
}

fn layout(device: &wgpu::Device, slots: &[Slot]) -> wgpu::BindGroupLayout {
    let entries: Vec<_> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match slot {
                Slot::Uniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: matches!(slot, Slot::Read) },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Slot::Image => wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::WriteOnly,
                    format: wgpu::TextureFormat::Rgba8Unorm,
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                },
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries })
}
