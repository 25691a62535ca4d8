/*
 * An MCU engineer's int8 kernels, written for fxp's worked example
 * (tests/testing/test_c_kernels.py): TFLite-style requantization and an int8
 * NCHW 3x3 convolution.  Compiled at test time into a shared library and
 * property-tested against fxp through ctypes.
 *
 * Two deliberately wrong variants are selected with macros:
 *   -DFXP_BUG_ROUNDING  RoundingDivideByPOT written as (x + (1 << (s-1))) >> s,
 *                       which rounds ties toward +inf instead of away from zero;
 *   -DFXP_BUG_ACC16     the convolution accumulates in an int16_t.
 */
#include <stdint.h>

#ifdef FXP_BUG_ACC16
typedef int16_t acc_t; /* BUG: 9 * C products of int8 do not fit 16 bits */
#else
typedef int32_t acc_t;
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a*b / 2^31), ties toward +inf. */
static inline int32_t sat_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / (1LL << 31)); /* C division truncates toward zero */
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent, ties away from zero. */
static inline int32_t rounding_divide_by_pot(int32_t x, int exponent)
{
#ifdef FXP_BUG_ROUNDING
    if (exponent == 0) {
        return x;
    }
    /* BUG: "add half and shift" rounds -0.5 to 0 (ties toward +inf). Done in
       int64 only so that the bug is the tie rule, not a signed overflow. */
    return (int32_t)(((int64_t)x + (1LL << (exponent - 1))) >> exponent);
#else
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
#endif
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding); shift > 0 is a left shift. */
static inline int32_t multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left); /* int32 wrap, as the core does */
    return rounding_divide_by_pot(sat_rounding_doubling_high_mul(shifted, multiplier), right);
}

static inline int8_t requantize_to_int8(int32_t acc, int32_t multiplier, int shift,
                                        int32_t zero_point)
{
    int64_t v = (int64_t)multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point;
    if (v < -128) {
        v = -128;
    }
    if (v > 127) {
        v = 127;
    }
    return (int8_t)v;
}

void requantize_s8(const int32_t *acc, int8_t *out, int32_t n, int32_t multiplier,
                   int32_t shift, int32_t zero_point)
{
    for (int32_t i = 0; i < n; ++i) {
        out[i] = requantize_to_int8(acc[i], multiplier, shift, zero_point);
    }
}

/* int8 conv, NCHW, 3x3 kernel, stride 1, padding 1 with the input zero point,
   symmetric weights (zero point 0), int32 bias, per-output-channel requant. */
void conv3x3_s8(const int8_t *input, int32_t batches, int32_t c_in, int32_t h, int32_t w,
                const int8_t *filter, int32_t c_out, const int32_t *bias, int32_t input_zp,
                const int32_t *multiplier, const int32_t *shift, int32_t output_zp,
                int8_t *output)
{
    for (int32_t b = 0; b < batches; ++b) {
        for (int32_t co = 0; co < c_out; ++co) {
            for (int32_t oy = 0; oy < h; ++oy) {
                for (int32_t ox = 0; ox < w; ++ox) {
                    acc_t acc = 0;
                    for (int32_t ci = 0; ci < c_in; ++ci) {
                        for (int32_t ky = 0; ky < 3; ++ky) {
                            for (int32_t kx = 0; kx < 3; ++kx) {
                                const int32_t iy = oy + ky - 1;
                                const int32_t ix = ox + kx - 1;
                                const int inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                                const int32_t xv = inside
                                    ? input[((b * c_in + ci) * h + iy) * w + ix] : input_zp;
                                const int32_t wv = filter[((co * c_in + ci) * 3 + ky) * 3 + kx];
                                acc += (acc_t)((xv - input_zp) * wv);
                            }
                        }
                    }
                    const int32_t total = (int32_t)acc + bias[co];
                    output[((b * c_out + co) * h + oy) * w + ox] =
                        requantize_to_int8(total, multiplier[co], shift[co], output_zp);
                }
            }
        }
    }
}
