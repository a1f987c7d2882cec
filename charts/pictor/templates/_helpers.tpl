{{- define "pictor.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pictor.selectorLabels" -}}
app.kubernetes.io/name: pictor-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pictor.labels" -}}
{{ include "pictor.selectorLabels" . }}
app.kubernetes.io/part-of: pictor
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pictor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pictor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
