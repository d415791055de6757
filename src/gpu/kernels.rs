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

/// Every kernel the decoder runs.
pub struct Kernels {
    pub dequantize: Kernel,
    pub conv2d: Kernel,
    pub group_norm_statistics: Kernel,
    pub group_norm_apply: Kernel,
    pub to_rgba: Kernel,
}

impl Kernels {
    pub fn new(device: &wgpu::Device) -> Self {
        use Slot::*;
        let dequantize = shader(device, "dequantize", include_str!("../../shaders/dequantize.wgsl"));
        let conv2d = shader(device, "conv2d", include_str!("../../shaders/conv2d.wgsl"));
        let group_norm = shader(device, "group_norm", include_str!("../../shaders/group_norm.wgsl"));
        let to_rgba = shader(device, "to_rgba", include_str!("../../shaders/to_rgba.wgsl"));
        let group_norm_layout = layout(device, &[Uniform, Read, Read, Read, ReadWrite, ReadWrite]);
        Self {
            dequantize: Kernel::new(
                device,
                &dequantize,
                "main",
                &layout(device, &[Uniform, Read, Read, Read, ReadWrite]),
            ),
            conv2d: Kernel::new(
                device,
                &conv2d,
                "main",
                &layout(device, &[Uniform, Read, Read, Read, Read, ReadWrite]),
            ),
            group_norm_statistics: Kernel::new(device, &group_norm, "statistics", &group_norm_layout),
            group_norm_apply: Kernel::new(device, &group_norm, "apply", &group_norm_layout),
            to_rgba: Kernel::new(device, &to_rgba, "main", &layout(device, &[Read, ReadWrite, Image])),
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
