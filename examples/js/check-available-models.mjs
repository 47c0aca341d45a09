// "Check Available Models" from the Model Management API contract, runnable under node >= 18.
// Usage: FOVEA_API_URL=http://localhost:3001 node check-available-models.mjs
const BASE = process.env.FOVEA_API_URL ?? 'http://localhost:3001'

const response = await fetch(`${BASE}/api/models/config`)
const config = await response.json()

// List detection models
Object.entries(config.models.object_detection.options).forEach(([name, model]) => {
  console.log(`${name}: ${model.description} (${model.vram_mb} MB)`)
})

// Get current selection
console.log('Current detection model:', config.models.object_detection.selected)
