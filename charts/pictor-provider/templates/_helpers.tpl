{{- define "provider.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of one component: include "provider.labels" (list . "agent") */}}
{{- define "provider.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ printf "pictor-%s" (index . 1) }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{- define "provider.labels" -}}
{{- $root := index . 0 -}}
{{ include "provider.selectorLabels" . }}
app.kubernetes.io/part-of: pictor
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{- end -}}

{{- define "provider.memberName" -}}
{{- required "member.name is required: the member name `pictor member add` admitted on the hub" .Values.member.name -}}
{{- end -}}

{{- define "provider.hubSecretName" -}}
{{- if .Values.hubKubeconfig.existingSecret -}}
{{- .Values.hubKubeconfig.existingSecret -}}
{{- else if .Values.hubKubeconfig.content -}}
{{- printf "%s-hub-kubeconfig" (include "provider.fullname" .) -}}
{{- else -}}
{{- fail "the hub kubeconfig is required: set hubKubeconfig.content (the kubeconfig `pictor member add` printed) or hubKubeconfig.existingSecret (a Secret in the release namespace holding it)" -}}
{{- end -}}
{{- end -}}

{{- define "provider.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository ($image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}
