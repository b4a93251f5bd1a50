package io.headroute.cli;

import io.headroute.attention.Backend;
import io.headroute.engine.Algorithm;
import io.headroute.engine.cuda.FlashPlan;
import io.headroute.tensor.DType;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** Lower-case option values with the parsers' own one-line messages. */
final class Converters {
    private Converters() {}

    static final class BackendConverter implements ITypeConverter<Backend> {
        @Override
        public Backend convert(String value) {
            try {
                return Backend.parse(value);
            } catch (IllegalArgumentException e) {
                throw new TypeConversionException(e.getMessage());
            }
        }
    }

    static final class AlgorithmConverter implements ITypeConverter<Algorithm> {
        @Override
        public Algorithm convert(String value) {
            try {
                return Algorithm.parse(value);
            } catch (IllegalArgumentException e) {
                throw new TypeConversionException(e.getMessage());
            }
        }
    }

    /** The tensor-core kernels' tilings: w4, w2, w4x2, wg, wgp, wgx2, wgpx2. */
    static final class TilingConverter implements ITypeConverter<FlashPlan.Tiling> {
        @Override
        public FlashPlan.Tiling convert(String value) {
            try {
                return FlashPlan.Tiling.parse(value);
            } catch (IllegalArgumentException e) {
                throw new TypeConversionException(e.getMessage());
            }
        }
    }

    /** The compute dtypes: f32, f16, bf16. */
    static final class ComputeDTypeConverter implements ITypeConverter<DType> {
        @Override
        public DType convert(String value) {
            DType d;
            try {
                d = DType.parse(value);
            } catch (IllegalArgumentException e) {
                d = null;
            }
            if (d != DType.F32 && d != DType.F16 && d != DType.BF16) {
                throw new TypeConversionException("unknown compute dtype '" + value + "' (expected f32, f16 or bf16)");
            }
            return d;
        }
    }
}
