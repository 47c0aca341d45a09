{{/*
The chart's objects are the kustomize tree's, read from files/ (generated from
manifests/ by scripts/generate_chart.py). These helpers do what
`kubectl kustomize manifests/base` does to them: the namespace and the part-of label.
*/}}

{{/* The objects of one file of files/ as a JSON list (pipe to fromJsonArray). */}}
{{- define "fovea.docs" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $objs := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" ($root.Files.Get $path) -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if $obj.Error -}}{{- fail (printf "%s: %s" $path $obj.Error) -}}{{- end -}}
{{- if $obj.kind -}}{{- $objs = append $objs $obj -}}{{- end -}}
{{- end -}}
{{- if not $objs -}}{{- fail (printf "%s holds no object" $path) -}}{{- end -}}
{{- toJson $objs -}}
{{- end -}}

{{/*
One object as the base's kustomization renders it: namespaced kinds and the
ServiceAccount subjects of bindings in the release's namespace, and (partOf) the
label app.kubernetes.io/part-of=fovea-models. Arguments: (list $ object partOf).
*/}}
{{- define "fovea.emit" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $ns := $root.Release.Namespace -}}
{{- $clusterScoped := list "Namespace" "CustomResourceDefinition" "ClusterRole" "ClusterRoleBinding" "ValidatingAdmissionPolicy" "ValidatingAdmissionPolicyBinding" -}}
{{- if eq $obj.kind "Namespace" -}}
{{- $_ := set $obj.metadata "name" $ns -}}
{{- else if not (has $obj.kind $clusterScoped) -}}
{{- $_ := set $obj.metadata "namespace" $ns -}}
{{- end -}}
{{- range $subject := $obj.subjects | default list -}}
{{- if eq $subject.kind "ServiceAccount" -}}{{- $_ := set $subject "namespace" $ns -}}{{- end -}}
{{- end -}}
{{- if index . 2 -}}
{{- $labels := $obj.metadata.labels | default dict -}}
{{- $_ := set $labels "app.kubernetes.io/part-of" "fovea-models" -}}
{{- $_ := set $obj.metadata "labels" $labels -}}
{{- end }}
---
{{ toYaml $obj }}
{{ end -}}

{{/* Every object of a list of files of files/, emitted. Arguments: (list $ files partOf). */}}
{{- define "fovea.emitFiles" -}}
{{- $root := index . 0 -}}
{{- range $path := index . 1 -}}
{{- range $obj := include "fovea.docs" (list $root $path) | fromJsonArray -}}
{{- include "fovea.emit" (list $root $obj (index $ 2)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fovea.controlPlaneImage" -}}
{{- $i := .Values.images -}}
{{- printf "%s/%s:%s" $i.registry $i.controlPlane.repository ($i.controlPlane.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "fovea.modelPodImage" -}}
{{- $i := .Values.images -}}
{{- $tag := $i.modelPod.tag | default (printf "%s-%s" .Chart.AppVersion $i.modelPod.variant) -}}
{{- printf "%s/%s:%s" $i.registry $i.modelPod.repository $tag -}}
{{- end -}}

{{/* What every control-plane Deployment takes from the values: image, pull policy, affinity. */}}
{{- define "fovea.controlPlanePod" -}}
{{- $root := index . 0 -}}
{{- $pod := index . 1 -}}
{{- $container := index $pod.containers 0 -}}
{{- $_ := set $container "image" (include "fovea.controlPlaneImage" $root) -}}
{{- if $root.Values.images.pullPolicy -}}
{{- $_ := set $container "imagePullPolicy" $root.Values.images.pullPolicy -}}
{{- end -}}
{{- if $root.Values.affinity -}}
{{- $_ := set $pod "affinity" $root.Values.affinity -}}
{{- end -}}
{{- end -}}
