/*
 * rocm_smi_lib 0.3 is generated from a ROCm 6 header and its get_device_identifiers() calls two
 * functions that librocm_smi64 5.2.3 (Debian 12's librocm-smi-dev) does not have:
 * rsmi_dev_revision_get and rsmi_dev_xgmi_physical_id_get. Linking anything that enumerates
 * AMD GPUs then fails with "undefined symbol". These stand-ins answer "not supported", which
 * rocm_smi_lib turns into an Err in the two fields Pictor never reads (revision, xGMI
 * physical id); xGMI links come from the KFD topology in sysfs instead.
 *
 * Linked into our binaries only, so they take the place of the library's own versions on newer
 * ROCm as well: the answer stays "not supported" for those two fields, and nothing else changes.
 */
#include <stdint.h>

/* RSMI_STATUS_NOT_SUPPORTED in rsmi_status_t, the same value in ROCm 5 and 6. */
#define PICTOR_RSMI_STATUS_NOT_SUPPORTED 2

int rsmi_dev_revision_get(uint32_t dv_ind, uint16_t *revision) {
  (void)dv_ind;
  (void)revision;
  return PICTOR_RSMI_STATUS_NOT_SUPPORTED;
}

int rsmi_dev_xgmi_physical_id_get(uint32_t dv_ind, uint16_t *id) {
  (void)dv_ind;
  (void)id;
  return PICTOR_RSMI_STATUS_NOT_SUPPORTED;
}
