// "Monitor Memory Usage" from the Model Management API contract, runnable under node >= 18.
// Usage: FOVEA_API_URL=http://localhost:3001 node monitor-memory.mjs
const BASE = process.env.FOVEA_API_URL ?? 'http://localhost:3001'

const statusResponse = await fetch(`${BASE}/api/models/status`)
const status = await statusResponse.json()

const usagePercent = (
  (status.total_vram_allocated_gb / status.total_vram_available_gb) * 100
).toFixed(1)

console.log(`VRAM Usage: ${status.total_vram_allocated_gb.toFixed(1)} GB / ${status.total_vram_available_gb} GB (${usagePercent}%)`)

// List loaded models
Object.entries(status.loaded_models).forEach(([task, model]) => {
  console.log(`${task}: ${model.model_id} (${model.memory_usage_gb.toFixed(1)} GB)`)
})
