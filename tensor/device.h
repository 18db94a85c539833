#pragma once
// Tensors name their device with the kernels' own Device (kernels/device.h), so that
// kernels/ needs nothing from tensor/.
#include "kernels/device.h"
