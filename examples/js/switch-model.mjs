// "Switch to Different Model" from the Model Management API contract, runnable under node >= 18.
// Usage: FOVEA_API_URL=http://localhost:3001 node switch-model.mjs
const BASE = process.env.FOVEA_API_URL ?? 'http://localhost:3001'

// Select YOLOv8m for better accuracy
const response = await fetch(
  `${BASE}/api/models/select?task_type=object_detection&model_name=yolov8m`,
  { method: 'POST' }
)

if (response.ok) {
  const result = await response.json()
  console.log('Model selected:', result.selected_model)
} else {
  const error = await response.json()
  console.error('Selection failed:', error.error)
}
