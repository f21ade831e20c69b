/* placeholder: tests for auth are being written */
int main(void) {
        return 77;
}
