import TensorCore
import TestSupport
import Testing

/// The helpers must fail when they should, or every numeric test could pass vacuously.
@Suite("Test helpers", .timed)
struct TestSupportTests {
  @Test func expectCloseReportsDifferences() throws {
    withKnownIssue {
      expectClose(Tensor([1, 2]), Tensor([1, 2.1]), "deliberate mismatch")
    }
    withKnownIssue {
      expectClose(Tensor([1, 2]), Tensor([1, 2, 3]), "deliberate shape mismatch")
    }
    expectClose(Tensor([1, 2]), Tensor([1, 2.000_001]), "within tolerance")
  }

  @Test func gradientCheckCatchesAWrongGradient() throws {
    let x = try sampleTensor([4], seed: 90)
    // relu(x)·x has gradient 2x on the positive side; x·detach(x) reports only x.
    withKnownIssue {
      try checkGradients([x], "deliberately wrong") { t in try t[0] * t[0].detached() }
    }
  }

  @Test func missingFixtureIsAnError() throws {
    #expect(throws: TensorError.self) { try Fixture("no-such-case") }
  }
}
