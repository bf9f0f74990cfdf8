// Entry points: one extern "C" kernel per (algorithm, dtype, op), named
// inc_<algo>_<dtype>_<op> (crates/inc-cuda/src/source.rs builds the same names).

#define INC_ENTRY(ALGO, DTN, DT, OPN, OP)                                                   \
    extern "C" __global__ void __launch_bounds__(INC_MAX_THREADS, 1)                         \
        inc_##ALGO##_##DTN##_##OPN(const IncArgs a) {                                        \
        inc_pdl_wait();                                                                      \
        inc_##ALGO<DT, OP>(a);                                                               \
    }

#define INC_ENTRY_OPS(ALGO, DTN, DT)    \
    INC_ENTRY(ALGO, DTN, DT, sum, 0)    \
    INC_ENTRY(ALGO, DTN, DT, avg, 1)    \
    INC_ENTRY(ALGO, DTN, DT, min, 2)    \
    INC_ENTRY(ALGO, DTN, DT, max, 3)

#define INC_ENTRY_ALL(ALGO)             \
    INC_ENTRY_OPS(ALGO, bf16, 0)        \
    INC_ENTRY_OPS(ALGO, f16, 1)         \
    INC_ENTRY_OPS(ALGO, f32, 2)

INC_ENTRY_ALL(one_shot)
INC_ENTRY_ALL(two_shot)
INC_ENTRY_ALL(hcm)
INC_ENTRY_ALL(push_one_shot)
