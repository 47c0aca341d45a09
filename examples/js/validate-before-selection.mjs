// "Validate Before Selection" from the Model Management API contract, runnable under node >= 18.
// Usage: FOVEA_API_URL=http://localhost:3001 node validate-before-selection.mjs
const BASE = process.env.FOVEA_API_URL ?? 'http://localhost:3001'

// Check if we have enough memory for high-quality models
const validateResponse = await fetch(`${BASE}/api/models/validate`, {
  method: 'POST'
})

const validation = await validateResponse.json()

if (validation.valid) {
  // Safe to use selected models
  console.log(`Using ${validation.total_required_gb.toFixed(1)} GB of ${validation.total_vram_gb} GB`)
} else {
  // Need to select smaller models
  console.warn('Insufficient VRAM:', validation.warnings.join(', '))
}
