//! `spae-studio`: the desktop studio (see `spae::studio`).

fn main() -> anyhow::Result<()> {
    spae::allocator::keep_freed_memory();
    spae::studio::run()
}
